"""Results records (one JSON per run) and the tables and plots made from many of them.

write_record(ctx, result)                         # <run dir>/results.json
records = load_records(["outputs/"])              # every results.json below
table = results_table(records)                    # rows per (setting, dataset, method), seed mean ± std
costs = cost_table(records)                       # per (setting, method): train time, FLOPs, params
write_report(records, out_dir, readme=None)       # results.md/.csv, costs.csv, results.png, cost_scatter.png
"""
