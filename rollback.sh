#!/usr/bin/env bash
# Rolls MarketingBot back in about a second (docs/deploy.md).
#
#   rollback.sh            switch `current` to the previous release (from releases/.history) and restart
#   rollback.sh RELEASE    switch to the named release (a name from releases/, or its path)
#   rollback.sh --list     list the releases, marking the active and the previous one
#
# The switch is one atomic rename; the restarted release is then waited for on /healthz (HEALTH_TIMEOUT).
# Exit codes: 0 switched and healthy; 1 nothing to roll back to, unknown release, failed restart or unhealthy
# after the switch (current then stays on the new target: run rollback.sh again or name a release);
# 3 a deploy or another rollback holds the lock.
# Settings (BASE, SERVICE, SYSTEMCTL, HEALTH_*) are the ones deploy.sh reads.
set -euo pipefail

# Shared helpers and settings. shellcheck follows this when deploy.sh is checked too, or with -x.
# shellcheck source-path=SCRIPTDIR source=deploy.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deploy.sh"

rollback_usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0"
}

list_with_marks() {
    local cur=$1 previous name mark
    previous=$(previous_release "$cur")
    while IFS= read -r name; do
        mark=""
        [[ $name == "$cur" ]] && mark=" (active)"
        [[ $name == "$previous" ]] && mark=" (previous)"
        printf '%s%s\n' "$name" "$mark"
    done < <(list_releases)
}

# The slot layout: the same hand-over as deploy.sh (start the idle slot, switch, stop the old one, lease).
rollback_slots() {
    local cur=$1 target=$2 t0=$3 code=0
    slot_handover rollback "$target" "$cur" || code=$?
    case $code in
        0) ;;
        1) die 1 "$target never became ready in its slot; nothing was switched, $cur still serves" ;;
        2) die 1 "$target failed after the switch; switched back, $cur serves and leads again" ;;
        *) die "$code" "$target failed after the switch and $cur could not take over again; check journalctl -u '$SLOT_SERVICE*'" ;;
    esac
    now_us
    log "rolled back to $target (zero-downtime hand-over) in $(fmt_s $((NOW_US - t0))) end to end"
}

rollback_main() {
    local cur target t0
    case ${1:-} in
        -h | --help) rollback_usage; return 0 ;;
    esac
    init_paths
    acquire_lock
    cur=$(current_release)
    if [[ ${1:-} == -l || ${1:-} == --list ]]; then
        list_with_marks "$cur"
        return 0
    fi
    [[ -n $cur ]] || die 1 "$BASE/current does not exist: nothing is deployed"
    if [[ $# -gt 0 ]]; then
        target=${1%/}
        target=${target##*/}
    else
        target=$(previous_release "$cur")
        [[ -n $target ]] || die 1 "no previous release in $HISTORY; name one: $LOG_NAME RELEASE (see $LOG_NAME --list)"
    fi
    [[ $target != "$cur" ]] || die 1 "$target is already the active release"
    [[ -x $RELEASES/$target/.venv/bin/marketingbot ]] ||
        die 1 "$RELEASES/$target is not a deployed release (no .venv/bin/marketingbot); see $LOG_NAME --list"

    now_us
    t0=$NOW_US
    log "rolling back from $cur to $target"
    if [[ $DEPLOY_LAYOUT == slots ]]; then
        rollback_slots "$cur" "$target" "$t0"
        return 0
    fi
    switch_logged "$target"
    history_append rollback "$target" "$cur"
    restart_service || die 1 "restarting $SERVICE failed; current points to $target (journalctl -u $SERVICE)"
    if ! wait_healthy; then
        die 1 "$target is not healthy at $HEALTH_URL after ${HEALTH_TIMEOUT}s ($HEALTH_RESULT); current points to it"
    fi
    now_us
    log "rolled back to $target ($HEALTH_RESULT) in $(fmt_s $((NOW_US - t0))) end to end"
}

rollback_main "$@"
