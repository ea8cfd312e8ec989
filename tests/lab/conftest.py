import sys
from pathlib import Path

# The CLI tests share helpers and fixture experiments that live beside them.
sys.path.insert(0, str(Path(__file__).parent))
