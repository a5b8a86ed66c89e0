#!/usr/bin/env bash
# Rewrites the fuzz targets' seed corpora (fuzz/corpus/<target>/) and the spec dictionary
# (fuzz/spec.dict) from the project itself: //fuzz:make_seeds writes real InsertRequests,
# tensors, checksummed files and HDF5 datasets with PRL's writers; the spec seeds are the
# example specs plus the hand-written ones already there; the dictionary holds the field and
# enum value names of proto/experiment.proto and the protos it imports.
#
#   fuzz/make_seeds.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bazel run //fuzz:make_seeds -- "${PWD}/fuzz/corpus"
cp examples/*.textproto fuzz/corpus/spec/
chmod 644 fuzz/corpus/*/*

{
  echo '# libFuzzer dictionary for spec_fuzzer: the words of text-format ExperimentSpecs (field and'
  echo '# enum value names of proto/experiment.proto and the protos it imports) and text-format'
  echo '# syntax. Written by fuzz/make_seeds.sh.'
  for proto in proto/experiment.proto proto/replay.proto proto/prior.proto; do
    grep -v '^[[:space:]]*//' "${proto}" | sed -n \
      -e 's/^[[:space:]]*\(optional \|repeated \)\{0,1\}[A-Za-z0-9_.<>, ]\{1,\} \([a-z_0-9]\{1,\}\) = [0-9]\{1,\};.*/\2/p' \
      -e 's/^[[:space:]]*\([A-Z][A-Z0-9_]\{1,\}\) = [0-9]\{1,\};.*/\1/p'
  done | sort -u | sed 's/.*/"&"/'
  printf '%s\n' '"{"' '"}"' '":"' '"["' '"]"' '","' '"\""' '"#"' '"\\n"' '"nan"' '"inf"' \
    '"-inf"' '"true"' '"false"' '"-1"' '"0"' '"1e308"' '"0x7fffffff"' \
    '"9223372036854775807"' '"-9223372036854775808"'
} >fuzz/spec.dict
echo "seeds: $(find fuzz/corpus -type f | wc -l) files; fuzz/spec.dict: $(grep -c '^"' fuzz/spec.dict) words"
