"""Train a group of configs and write each member's records: the core below everything that
runs experiments (`winit run`, the sweep executors, `winit.watch`'s records).

    group.py    data splits, training a group, run folders with checkpoints (`run_group`)
    member.py   a trained member's final record and tables (`assemble`)
    events.py   TensorBoard event files while a group trains
"""
