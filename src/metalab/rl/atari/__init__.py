"""Atari 2600 curricula (Rusu et al., 2022): ALE adapter, variants, DQN agent, analysis.

The public entry point is :mod:`metalab.rl.atari_transfer`. ale-py (the ``atari`` extra) is
imported lazily, only when an emulator is created.
"""
