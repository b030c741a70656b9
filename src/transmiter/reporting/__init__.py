"""Results records (one JSON per run) and the tables and plots made from many of them.

write_record(ctx, result)                         # <run dir>/results.json
records = load_records(["outputs/"])              # every results.json below
table = results_table(records)                    # rows per (setting, dataset, method), seed mean ± std
write_report(records, out_dir)                    # results.md, results.csv, results.png
"""
