"""The DuckDB contender of bench/analyze.sh: every trail file under ROOT read with read_json, the records
unnested, expired-token failures filtered and grouped by principal. Prints groups and failures.

    python bench/duckdb_failures.py ROOT
"""

import sys

import duckdb

root = sys.argv[1]
rows = duckdb.connect().execute(
    f"""
    SELECT r.userIdentity.arn AS principal, count(*) AS failures,
           CAST(min(r.eventTime) AS VARCHAR) AS first, CAST(max(r.eventTime) AS VARCHAR) AS last
    FROM (SELECT unnest(Records) AS r
          FROM read_json('{root}/**/*.json.gz', maximum_object_size = 268435456))
    WHERE r.errorCode IN ('ExpiredToken', 'ExpiredTokenException')
    GROUP BY ALL
    ORDER BY failures DESC
    """
).fetchall()
print(f"{len(rows)} groups, {sum(r[1] for r in rows)} failures")
