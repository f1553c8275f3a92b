#!/bin/sh
# Writes the alert rules a Prometheus outside Kubernetes loads: the spec of the PrometheusRule in
# k8s/base/monitoring.yaml (one source for both), then runs its arguments, if any. The compose
# prometheus service runs Prometheus through it:
#   docclass-rules.sh /bin/prometheus --config.file=...
# By hand (POSIX sh and awk; busybox's do):
#   DOCCLASS_PROMETHEUSRULE=k8s/base/monitoring.yaml DOCCLASS_RULES_FILE=docclass.rules.yaml \
#     sh compose/monitoring/docclass-rules.sh
# The manifest's documents are split at "---"; the PrometheusRule's spec is every line after its
# "spec:" indented by two or more spaces (blank and comment lines too), with two spaces removed.
set -eu
in=${DOCCLASS_PROMETHEUSRULE:-/etc/docclass/monitoring.yaml}
out=${DOCCLASS_RULES_FILE:-/tmp/docclass.rules.yaml}
awk '
  /^---/ { rule = 0; spec = 0; next }
  /^kind: PrometheusRule[ \t]*$/ { rule = 1; found = 1 }
  rule && spec && /^[^ #]/ { spec = 0 }
  rule && spec { if ($0 !~ /^#/) { print substr($0, 3); lines++ }; next }
  rule && /^spec:[ \t]*$/ { spec = 1 }
  END { if (!found || !lines) exit 1 }
' "$in" >"$out.tmp" || {
  echo "docclass-rules: no PrometheusRule spec in $in" >&2
  rm -f "$out.tmp"
  exit 78
}
mv "$out.tmp" "$out"
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
