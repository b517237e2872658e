"""benchmarks/tied_test_events.py: which test users share a second with their last training event."""

from __future__ import annotations

import pandas as pd

from repo_scripts import load_script


def test_tie_groups_split_test_users_by_the_second_of_their_last_training_event() -> None:
    mod = load_script("benchmarks/tied_test_events.py", "tied_test_events")
    train = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c"],
            "item_id": ["1", "2", "1", "3", "4"],
            "timestamp": [5, 9, 5, 7, 3],
        }
    )
    test = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["7", "8", "9"], "timestamp": [9, 8, 3]})
    groups = mod.tie_groups(train, test)
    assert groups == {"tied": {"a", "c"}, "later": {"b"}}
