"""The middle floor: how runs are made, on top of the foundation (config, models, data, methods,
recorders, memory, store) and below the entry points (CLI, API, app, analyses, benchmarks).

    assembly.py      setup_run (load model + anatomy, build and check the method, load the task, check it
                     fits, resolve lr), train_stream, prepare_method: the one path to a prepared method
    train.py         THE training loop (`train(config)` -> one recorded run)
    sweeps.py        grids of runs over methods x options x seeds, resumable by run key
    study.py         every method at one size, the table of ratios to LoRA, serving the app on its runs
    memory_sweep.py  saved-activation bytes per (length, batch size) point of a prepared method

Modules are imported by name (`from workbench.orchestration.train import train`); the package itself
imports nothing, so each caller loads only what it uses.
"""
