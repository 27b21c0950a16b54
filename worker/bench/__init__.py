"""`python -m worker.bench`: latency and throughput of the pipeline next to the floor and the baselines.

One run starts its own redis-server, two fake Twilio processes (one answering at once, one after
`--provider-latency-ms`), worker processes, and separate producer processes; it prints the performance
figures with their targets, writes them as JSON and draws latency against offered load as a PNG.
See docs/benchmark.md for what each figure measures and how.

Modules, one concept each:
- `options`: what a run measures and for how long (`--quick` and the full run);
- `workload`: the one message every measurement sends, and the workers' config file;
- `stats`: percentiles;
- `processes`: starting, probing and always stopping the fakes and the workers;
- `producer_pool`: the separate producer processes that run the load drivers;
- `rawworker`, `bare`: the floor's raw-Redis worker and baseline A's bare Celery app;
- `baselines`, `load`: the producer side, for the baselines and for our pipeline;
- `proc`: CPU time and memory from /proc; `summaries`: raw samples → figures;
- `runner`: the phases of a run in order; `report`, `plot`: the table, the JSON and the PNG;
- `command`: the command line (`python -m worker.bench`, `midcall-sms bench`).
"""
