#!/usr/bin/env bash
# What `make run` shows a newcomer until the admin console exists: the example settings,
# validated, and the route egress picks for a few destinations, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
egress=.venv/bin/egress
cfg=examples/egress.yaml
echo "== egress validate --config $cfg"
$egress validate --config "$cfg"
for url in \
    https://auth.carto.com/ \
    https://bigquery.googleapis.com/bigquery/v2/projects \
    https://acme.snowflakecomputing.com/ \
    postgresql://pg.analytics.example.com:5432/analytics \
    https://dbc-1234.cloud.databricks.com/ \
    http://metadata.google.internal/computeMetadata/v1/ \
    http://workspace-api.carto.svc.cluster.local:8080/health ; do
  echo
  echo "== egress explain $url --config $cfg"
  $egress explain "$url" --config "$cfg"
done
