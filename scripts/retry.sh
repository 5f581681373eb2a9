# Sourced by scripts/test and scripts/conformance.sh. Registries fail now and then (a CI run once
# lost `npm ci` to one, with nothing printed): `retry CMD…` tries a download three times, 10 s
# then 20 s apart, and says each failure on stderr.
retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        [ "$n" = 3 ] || {
            echo "$(basename "$0"): failed (attempt $n of 3), again in $((n * 10)) s: $*" >&2
            sleep $((n * 10))
        }
    done
    echo "$(basename "$0"): failed three times: $*" >&2
    return 1
}
