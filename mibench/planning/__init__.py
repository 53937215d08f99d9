"""Resource planner (issue 17, item 5): GPU-hours and peak GPU memory of an experiment.

Every network is built on the **meta** device from the attacks' and targets' own classes, one
training or attack step is run there, and its FLOPs (``torch.utils.flop_counter``) and its live
tensor bytes (a dispatch-mode tracker) are counted; nothing is computed and no world is built.
``python -m mibench.planning --experiment table1 --preset paper --gpu rtx4090`` prints the plan.
"""
