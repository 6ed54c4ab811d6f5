"""What every training run has, whichever model it trains: the tokenizer's (`wetok.training`,
`wetok train`) and the generator's (`wetok.ar.training`, `wetok train-ar`).

    checkpoints  one atomic file per step under RUN_DIR/checkpoints, which one a run resumes from,
                 every rank's RNG state
    ema          an exponential moving average of a model's weights
    job          one process of the job: torchrun's process group, restarts, a peer's failure
    schedule     the learning-rate schedules (warm-up, constant / cosine / step)
    signals      SIGTERM/SIGINT as "checkpoint and stop"; NaN/inf losses as `TrainingDiverged`
    logs         metrics.jsonl, eval.jsonl, TensorBoard and PNG grids of RUN_DIR (`RunLog`)
    settings     YAML files read into frozen dataclasses, `--set` overrides

It knows neither model: it imports neither `wetok.training` nor `wetok.ar`, nor the tokenizer's
networks, the command line or evaluation.
"""
