"""Contextual bandits over language-model features: LinUCB (shared, disjoint, hybrid), linear Thompson
sampling and epsilon-greedy, for single items and slates with exploration slots."""

from tokrec.bandits.policies import BanditPolicy, PolicyConfig, Selection, load_policy

__all__ = ["BanditPolicy", "PolicyConfig", "Selection", "load_policy"]
