#!/usr/bin/env bash
# Blue-green deploy of MarketingBot on one VM (docs/deploy.md).
#
#   deploy.sh [REF]      build releases/<UTC stamp>_<short hash> from REF (default HEAD of REPO), smoke-test it,
#                        switch `current` atomically, restart the unit, wait for /healthz, roll back if unhealthy.
#
# Exit codes: 0 deployed and healthy; 1 failed before the switch (the running release is untouched);
# 2 switched but never healthy, rolled back to the previous release (which is healthy);
# 3 another deploy or rollback holds the lock; 4 rolled back, but the previous release is not healthy either.
#
# rollback.sh sources this file for the shared helpers; deploy_main only runs when executed directly.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_NAME=${0##*/}

BASE=${BASE:-/home/marketing}
SERVICE=${SERVICE:-marketingbot}
SYSTEMCTL=${SYSTEMCTL:-sudo systemctl}
KEEP=${KEEP:-5}
HEALTH_URL=${HEALTH_URL:-}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-0.5}
HEALTH_ACCEPT=${HEALTH_ACCEPT:-ok}
PYTHON=${PYTHON:-python3}
SMOKE_IMPORTS=${SMOKE_IMPORTS:-bot gateway telegram gspread google.genai}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-120}
VENV_OPTS=${VENV_OPTS:-}
DEPLOY_PIP_OPTS=${DEPLOY_PIP_OPTS:-}
# Zero-downtime slots (docs/deploy.md, "Zero-downtime slots (blue-green)"): DEPLOY_LAYOUT=slots runs each
# release in marketingbot@blue|green on the held marketingbot.socket; "single" restarts the one unit.
DEPLOY_LAYOUT=${DEPLOY_LAYOUT:-}
SLOT_SERVICE=${SLOT_SERVICE:-marketingbot@}
SLOT_SOCKET_DIR=${SLOT_SOCKET_DIR:-}
LEASE_TIMEOUT=${LEASE_TIMEOUT:-30}
# The smoke test runs `marketingbot check` under the unit's own user and sandbox (read-only release, writable
# shared/), so a release that would fail only under systemd fails here, before the switch. Tests substitute a
# stub; SANDBOX_RUN="" runs the check without a sandbox (a machine without systemd).
SANDBOX_RUN=${SANDBOX_RUN-sudo systemd-run --wait --pipe --collect --quiet --service-type=exec}
UNIT_FILE=${UNIT_FILE:-}
CHECK_OPTS=${CHECK_OPTS:-}
# The unit's [Service] settings that shape what `check` can see and write; copied onto the smoke test.
SANDBOX_PROPERTIES=" User Group Environment EnvironmentFile UMask NoNewPrivileges ProtectSystem ProtectHome \
ReadWritePaths ReadOnlyPaths InaccessiblePaths PrivateTmp PrivateDevices PrivateUsers ProtectKernelTunables \
ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectClock ProtectHostname ProtectProc ProcSubset \
RestrictNamespaces RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute RemoveIPC \
RestrictAddressFamilies CapabilityBoundingSet SystemCallArchitectures SystemCallFilter SystemCallErrorNumber "

# Files every release shares with the others; the release holds relative links to BASE/shared/<item>.
SHARED_ITEMS=(.env credentials.json chat_memory.db logs)
RELEASE_GLOB='[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9][0-9][0-9]_*'

RELEASES=""
HISTORY=""
SYSTEMCTL_CMD=()
NOW_US=0
HEALTH_RESULT=""
BUILDING=""
PHASE=idle
PENDING_OLD=""
PENDING_NEW=""
PENDING_FROM_SLOT=""

# Every log line goes to stderr with a timestamp; stdout stays free for values returned by helpers.
log() {
    printf '%(%Y-%m-%d %H:%M:%S)T %s: %s\n' -1 "$LOG_NAME" "$*" >&2
}

die() {
    local code=$1
    shift
    log "ERROR: $*"
    exit "$code"
}

# Sets NOW_US to the wall clock in microseconds (no fork: EPOCHREALTIME is a bash 5 builtin).
now_us() {
    local t=${EPOCHREALTIME:-}
    if [[ -n $t ]]; then
        NOW_US=${t//[.,]/}
    else
        NOW_US=$(($(date +%s%N) / 1000))
    fi
}

fmt_ms() {
    printf '%d.%d ms' $(($1 / 1000)) $(($1 % 1000 / 100))
}

fmt_s() {
    printf '%d.%02d s' $(($1 / 1000000)) $(($1 % 1000000 / 10000))
}

# Prints the last value of KEY in shared/.env (quotes stripped), or nothing.
env_value() {
    local file=$BASE/shared/.env value
    [[ -r $file ]] || return 0
    value=$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*//p" "$file" | tail -n 1)
    value=${value%$'\r'}
    value=${value#[\"\']}
    value=${value%[\"\']}
    printf '%s' "$value"
}

init_paths() {
    mkdir -p "$BASE/releases" "$BASE/shared"
    BASE=$(cd "$BASE" && pwd)
    RELEASES=$BASE/releases
    HISTORY=$RELEASES/.history
    read -r -a SYSTEMCTL_CMD <<<"$SYSTEMCTL"
    if [[ -z $HEALTH_URL ]]; then
        # Follow the app's own WEB_HOST/WEB_PORT so a changed port does not break the health check.
        local host port
        host=$(env_value WEB_HOST)
        port=$(env_value WEB_PORT)
        case $host in '' | 0.0.0.0 | :: | '[::]') host=127.0.0.1 ;; esac
        HEALTH_URL="http://$host:${port:-8080}/healthz"
    fi
    if [[ -z $DEPLOY_LAYOUT ]]; then
        DEPLOY_LAYOUT=$(env_value DEPLOY_LAYOUT)
    fi
    DEPLOY_LAYOUT=${DEPLOY_LAYOUT:-single}
    case $DEPLOY_LAYOUT in
        single | slots) ;;
        *) die 1 "DEPLOY_LAYOUT must be single or slots, got '$DEPLOY_LAYOUT'" ;;
    esac
    SLOT_SOCKET_DIR=${SLOT_SOCKET_DIR:-$BASE/shared/data}
}

# One lock for deploy.sh and rollback.sh: they must never interleave their switches and restarts.
acquire_lock() {
    exec 9>>"$RELEASES/.lock"
    if ! flock -n 9; then
        die 3 "another deploy or rollback is running (lock $RELEASES/.lock is held); try again when it finishes"
    fi
}

# Runs a command, prefixing each line of its output with a timestamp; returns the command's status.
run_logged() {
    "$@" 2>&1 | while IFS= read -r line; do log "  | $line"; done
}

list_releases() {
    local dir
    for dir in "$RELEASES"/$RELEASE_GLOB/; do
        if [[ -d $dir ]]; then
            dir=${dir%/}
            printf '%s\n' "${dir##*/}"
        fi
    done
}

current_release() {
    local link=$BASE/current target
    if [[ -L $link ]]; then
        target=$(readlink "$link")
        printf '%s' "${target##*/}"
    elif [[ -e $link ]]; then
        die 1 "$link exists but is not a symlink; move it away first"
    fi
}

# The release to return to: the most recent activation in the history that is not CURRENT, was not left
# by a rollback since it was last activated (a release we rolled back from is bad) and still exists.
previous_release() {
    local cur=$1 name names=()
    [[ -f $HISTORY ]] || return 0
    mapfile -t names < <(awk '
        NF >= 3 && $3 != "-" { order[++n] = $3; bad[$3] = 0 }
        NF >= 4 && ($2 == "rollback" || $2 == "auto-rollback") && $4 != "-" { bad[$4] = 1 }
        END { for (i = n; i >= 1; i--) if (!bad[order[i]] && !seen[order[i]]++) print order[i] }
    ' "$HISTORY")
    for name in "${names[@]}"; do
        if [[ $name != "$cur" && -d $RELEASES/$name/.venv ]]; then
            printf '%s' "$name"
            return 0
        fi
    done
}

# Appends "<time> <action> <activated release|-> <left release|->" to the history.
history_append() {
    printf '%(%Y-%m-%dT%H:%M:%S%z)T %s %s %s\n' -1 "$1" "${2:--}" "${3:--}" >>"$HISTORY"
}

# Points `current` at releases/NAME with one rename(2): readers see the old or the new link, never none.
switch_to() {
    local tmp=$BASE/.current.$$.tmp
    ln -sfn "releases/$1" "$tmp" || return 1
    mv -T -f "$tmp" "$BASE/current" || return 1
}

# Switches and logs how long the switch itself took.
switch_logged() {
    local t0
    now_us
    t0=$NOW_US
    switch_to "$1" || return 1
    now_us
    log "switched current -> releases/$1 in $(fmt_ms $((NOW_US - t0)))"
}

restart_service() {
    log "restarting $SERVICE: ${SYSTEMCTL_CMD[*]} restart $SERVICE"
    # Manual starts count against the unit's StartLimitBurst too: after a crash-looping release, the way
    # back must not be refused with "start request repeated too quickly".
    "${SYSTEMCTL_CMD[@]}" reset-failed "$SERVICE" >/dev/null 2>&1 9>&- || true
    # 9>&-: whatever the service manager spawns must not inherit the deploy lock.
    run_logged "${SYSTEMCTL_CMD[@]}" restart "$SERVICE" 9>&-
}

# Polls HEALTH_URL until its JSON "status" is one of HEALTH_ACCEPT or HEALTH_TIMEOUT passes.
# Leaves the last status or error in HEALTH_RESULT.
wait_healthy() {
    local rc=0
    HEALTH_RESULT=$("$PYTHON" - "$HEALTH_URL" "$HEALTH_TIMEOUT" "$HEALTH_INTERVAL" "$HEALTH_ACCEPT" 2>&1 <<'PY'
import json
import sys
import time
import urllib.error
import urllib.request

url, timeout, interval, accept = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split()
# No proxy: the health endpoint is local even when the VM routes HTTP through a proxy.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + timeout
last = "no answer"
while True:
    try:
        with opener.open(url, timeout=max(0.5, min(5.0, deadline - time.monotonic()))) as resp:
            status = json.loads(resp.read() or b"{}").get("status")
            if status in accept:
                print(f"status={status}")
                sys.exit(0)
            last = f"HTTP {resp.status}, status={status!r}"
    except urllib.error.HTTPError as exc:
        last = f"HTTP {exc.code}"
    except (OSError, ValueError, AttributeError) as exc:
        last = f"{type(exc).__name__}: {exc}"
    if time.monotonic() >= deadline:
        print(last)
        sys.exit(1)
    time.sleep(interval)
PY
) || rc=$?
    return "$rc"
}

# Returns to OLD after NEW failed (or the run was interrupted after the switch). Prints nothing on stdout;
# returns 2 when OLD is healthy again, 4 when it is not.
revert() {
    local old=$1 new=$2
    PHASE=reverting
    if [[ $DEPLOY_LAYOUT == slots ]]; then
        # An explicit status: a bare `return` in a trap handler (on_exit) returns the status from before the trap.
        local rc=0
        slot_revert "$old" "$new" "$PENDING_FROM_SLOT" || rc=$?
        return "$rc"
    fi
    if [[ -z $old ]]; then
        log "no earlier release to return to: stopping $SERVICE and removing current"
        run_logged "${SYSTEMCTL_CMD[@]}" stop "$SERVICE" 9>&- || log "warning: stopping $SERVICE failed"
        rm -f -- "$BASE/current"
        history_append auto-rollback - "$new"
        return 2
    fi
    log "rolling back to $old"
    if ! switch_logged "$old"; then
        log "ERROR: could not switch current back to $old"
        return 4
    fi
    history_append auto-rollback "$old" "$new"
    if restart_service && wait_healthy; then
        log "rolled back: $old is healthy again ($HEALTH_RESULT); $new stays in releases/ for inspection"
        return 2
    fi
    log "ERROR: the previous release $old is not healthy either ($HEALTH_RESULT): check journalctl -u $SERVICE"
    return 4
}

on_exit() {
    local rc=$? code
    if [[ -n $BUILDING ]]; then
        rm -rf -- "$BUILDING"
        log "removed the unfinished release ${BUILDING##*/}"
        BUILDING=""
    fi
    if [[ $PHASE == switched ]]; then
        log "stopped after the switch but before $PENDING_NEW was confirmed healthy"
        code=0
        revert "$PENDING_OLD" "$PENDING_NEW" || code=$?
        exit "$code"
    fi
    exit "$rc"
}

new_release_name() {
    local short=$1 stamp
    stamp=$(date -u +%Y%m%d_%H%M%S)
    # Another release made within the same second: wait for the next one, so that release names (sorted by
    # `rollback.sh --list`) keep the order of the deploys and the same commit never reuses a name.
    while compgen -G "$RELEASES/${stamp}_*" >/dev/null; do
        sleep 0.2
        stamp=$(date -u +%Y%m%d_%H%M%S)
    done
    printf '%s_%s' "$stamp" "$short"
}

link_shared() {
    local rel=$1 item
    mkdir -p "$BASE/shared/logs" || return 1
    for item in "${SHARED_ITEMS[@]}"; do
        rm -rf -- "${rel:?}/$item" || return 1
        ln -s "../../shared/$item" "$rel/$item" || return 1
    done
    if [[ ! -e $BASE/shared/.env ]]; then
        log "warning: $BASE/shared/.env is missing; the unit's EnvironmentFile needs it"
    fi
}

# Each step checks its own status: `set -e` does not apply inside a function called from `if`.
build_release() {
    local commit=$1 rel=$2 venv_opts=()
    read -r -a venv_opts <<<"$VENV_OPTS"
    mkdir "$rel" || return 1
    log "extracting $commit (git archive: tracked files only, no .git)"
    git -C "$REPO" archive --format=tar "$commit" | tar -x -C "$rel" || return 1
    link_shared "$rel" || return 1
    log "creating $rel/.venv"
    run_logged "$PYTHON" -m venv "${venv_opts[@]}" "$rel/.venv" || return 1
    install_release "$rel"
}

# Installs the release into its venv: from the hashed lock file when the release has one (every package
# checked against its sha256, nothing resolved at deploy time), then the project itself without dependencies.
install_release() {
    local rel=$1 pip=() pip_opts=()
    read -r -a pip_opts <<<"$DEPLOY_PIP_OPTS"
    pip=("$rel/.venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off)
    if [[ -f $rel/requirements.lock ]]; then
        log "installing the locked dependencies (requirements.lock, --require-hashes)"
        run_logged "${pip[@]}" "${pip_opts[@]}" --require-hashes --no-deps -r "$rel/requirements.lock" || return 1
        log "installing the release (--no-deps: everything it needs came from the lock)"
        run_logged "${pip[@]}" "${pip_opts[@]}" --no-deps --no-build-isolation "$rel" || return 1
        return 0
    fi
    if [[ -f $rel/constraints.txt ]]; then
        pip_opts+=(-c "$rel/constraints.txt")
    fi
    log "installing the release and its pinned dependencies (no requirements.lock in this release)"
    run_logged "${pip[@]}" "${pip_opts[@]}" "$rel" || return 1
}

smoke_test() {
    local rel=$1 imports=()
    read -r -a imports <<<"$SMOKE_IMPORTS"
    log "smoke test: critical imports: ${imports[*]}"
    # -I: import from the installed package, not from the source tree in the working directory.
    if ! (cd "$rel" && run_logged timeout "$SMOKE_TIMEOUT" .venv/bin/python -I -c '
import importlib
import sys

failed = 0
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        print(f"import {name} failed: {type(exc).__name__}: {exc}")
        failed = 1
sys.exit(failed)
' "${imports[@]}"); then
        log "smoke test: a critical import failed"
        return 1
    fi
    smoke_check "$rel"
}

# Prints `-p Key=Value` for each sandbox setting of the unit file, paths moved to BASE and the working
# directory set to the new release (`current` still points at the old one).
sandbox_properties() {
    local rel=$1 unit=${UNIT_FILE:-$1/$SERVICE.service} line key value section=""
    if [[ ! -f $unit ]]; then
        log "smoke test: no unit file $unit to take the sandbox from"
        return 1
    fi
    printf '%s\n' -p "WorkingDirectory=$rel"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        case $line in '' | '#'* | ';'*) continue ;; '['*) section=$line && continue ;; esac
        [[ $section == "[Service]" && $line == *=* ]] || continue
        key=${line%%=*}
        value=${line#*=}
        if [[ $SANDBOX_PROPERTIES == *" $key "* ]]; then
            printf '%s\n' -p "$key=${value//\/home\/marketing/$BASE}"
        fi
    done <"$unit"
}

# `marketingbot check` as the service will run: same user, environment and sandbox (see SANDBOX_RUN).
smoke_check() {
    local rel=$1 sandbox=() props=() check=()
    read -r -a sandbox <<<"$SANDBOX_RUN"
    read -r -a check <<<"$CHECK_OPTS"
    if [[ -z $(current_release) ]]; then
        # Nothing serves WEBAPP_URL before the first release starts; `marketingbot check` after it does.
        check+=(--skip mini-app)
    fi
    if ((${#sandbox[@]})); then
        mapfile -t props < <(sandbox_properties "$rel") || return 1
        ((${#props[@]})) || return 1
        log "smoke test: marketingbot check ${check[*]} (in the unit's sandbox: ${sandbox[*]})"
        # 9>&-: the sandboxed check must not inherit the deploy lock.
        if ! run_logged timeout "$SMOKE_TIMEOUT" "${sandbox[@]}" "${props[@]}" \
            "$rel/.venv/bin/marketingbot" check "${check[@]}" 9>&-; then
            log "smoke test: marketingbot check failed in the sandbox (exit 124 means it timed out after ${SMOKE_TIMEOUT}s)"
            return 1
        fi
        return 0
    fi
    log "smoke test: marketingbot check ${check[*]} (SANDBOX_RUN is empty: not sandboxed)"
    # The working directory is the release, so the app reads its .env link (shared/.env) as under systemd.
    if ! (cd "$rel" && run_logged timeout "$SMOKE_TIMEOUT" .venv/bin/marketingbot check "${check[@]}"); then
        log "smoke test: marketingbot check failed (exit 124 means it timed out after ${SMOKE_TIMEOUT}s)"
        return 1
    fi
}

# Prints the top entry of the release's releases.md (an empty "Unreleased" section is skipped).
print_release_notes() {
    local file=$1/releases.md line
    if [[ ! -f $file ]]; then
        log "no releases.md in this release"
        return 0
    fi
    log "release notes (top entry of releases.md):"
    while IFS= read -r line; do
        if [[ -n ${line//[[:space:]]/} ]]; then
            log "  $line"
        fi
    done < <(awk '
        function flush() {
            if (head != "" && !done && (head !~ /^## \[?[Uu]nreleased/ || nonblank)) { print body; done = 1 }
        }
        /^## / { flush(); head = $0; body = $0; nonblank = 0; next }
        head != "" { body = body "\n" $0; if ($0 ~ /[^[:space:]]/) nonblank = 1 }
        END { flush() }
    ' "$file")
}

log_polling_mode() {
    if [[ $DEPLOY_LAYOUT == slots ]]; then
        if [[ -n $(env_value WEBHOOK_URL) ]]; then
            log "mode: webhook, slots: the leader takes updates; a standby hands them to the leader (503 if none is reachable)"
        else
            log "mode: long polling, slots: the old leader stops polling and drains, then the new one takes the lease and polls"
        fi
        return 0
    fi
    if [[ -n $(env_value WEBHOOK_URL) ]]; then
        log "mode: webhook (WEBHOOK_URL set): updates that arrive during the restart wait at Telegram and are re-delivered"
    else
        log "mode: long polling: the old process stops before the new one polls (two pollers on one token get 409 Conflict)"
    fi
}

# Deletes old releases, keeping KEEP of them (at least 2) and always the active and the previous one.
prune() {
    local active=$1 previous limit=$KEEP name
    local -A keep=()
    previous=$(previous_release "$active")
    if ((limit < 2)); then
        limit=2
    fi
    keep[$active]=1
    if [[ -n $previous ]]; then
        keep[$previous]=1
    fi
    while IFS= read -r name; do
        if ((${#keep[@]} >= limit)); then
            break
        fi
        keep[$name]=1
    done < <(list_releases | sort -r)
    while IFS= read -r name; do
        if [[ -z ${keep[$name]:-} ]]; then
            rm -rf -- "${RELEASES:?}/$name"
            log "pruned old release $name"
        fi
    done < <(list_releases)
}

# -- zero-downtime slots (DEPLOY_LAYOUT=slots) ------------------------------------------------------------
# Two template instances, marketingbot@blue and marketingbot@green, accept on the one socket systemd holds
# (marketingbot.socket). slots/<slot> links to the release the slot runs; releases/.slot names the live slot.
# Hand-over: start the idle slot, wait until it answers on its own socket, switch `current`, stop the old
# slot (it drains and lets the leader lease go), then check that the new slot holds the lease.

active_slot() {
    local file=$RELEASES/.slot slot=""
    [[ -f $file ]] && read -r slot <"$file"
    case $slot in blue | green) printf '%s' "$slot" ;; esac
}

idle_slot() {
    if [[ $1 == blue ]]; then printf green; else printf blue; fi
}

set_active_slot() {
    printf '%s\n' "$1" >"$RELEASES/.slot.$$.tmp" && mv -f "$RELEASES/.slot.$$.tmp" "$RELEASES/.slot"
}

# Points slots/SLOT at releases/NAME with one rename, like `current` (the slot unit runs slots/%i).
point_slot() {
    local slot=$1 name=$2 tmp
    mkdir -p "$BASE/slots" || return 1
    tmp=$BASE/slots/.$slot.$$.tmp
    ln -sfn "../releases/$name" "$tmp" && mv -T -f "$tmp" "$BASE/slots/$slot"
}

slot_release() {
    local link=$BASE/slots/$1
    [[ -L $link ]] && basename "$(readlink "$link")"
    return 0
}

start_slot() {
    local unit=$SLOT_SERVICE$1
    log "starting $unit (release $(slot_release "$1")) beside the running slot"
    "${SYSTEMCTL_CMD[@]}" reset-failed "$unit" >/dev/null 2>&1 9>&- || true
    run_logged "${SYSTEMCTL_CMD[@]}" start "$unit" 9>&- || return 1
    # Enabled so the live slot (and only it) comes back after a reboot.
    run_logged "${SYSTEMCTL_CMD[@]}" enable "$unit" 9>&- || log "warning: could not enable $unit"
}

stop_slot() {
    local unit=$SLOT_SERVICE$1 t0
    now_us
    t0=$NOW_US
    log "stopping $unit: it stops taking updates, drains in-flight work and releases the leader lease"
    run_logged "${SYSTEMCTL_CMD[@]}" disable "$unit" 9>&- || log "warning: could not disable $unit"
    run_logged "${SYSTEMCTL_CMD[@]}" stop "$unit" 9>&- || return 1
    now_us
    log "$unit stopped in $(fmt_s $((NOW_US - t0)))"
}

# Polls the slot's own socket until /healthz answers (WANT=ready: a status in HEALTH_ACCEPT; WANT=leader:
# also "role": "leader") or TIMEOUT passes. Leaves the last answer in HEALTH_RESULT.
wait_slot() {
    local slot=$1 want=$2 timeout=$3 rc=0
    HEALTH_RESULT=$("$PYTHON" - "$SLOT_SOCKET_DIR/slot-$slot.sock" "$want" "$timeout" "$HEALTH_INTERVAL" \
        "$HEALTH_ACCEPT" 2>&1 <<'PY'
import http.client
import json
import socket
import sys
import time

path, want, timeout, interval, accept = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5].split()


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the slot's unix socket: it reaches this slot only, not whichever process accepts on the port."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(path)


deadline = time.monotonic() + timeout
last = "no answer"
while True:
    conn = UnixConnection("localhost", timeout=max(0.5, min(5.0, deadline - time.monotonic())))
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        status, role = body.get("status"), body.get("role")
        if status in accept and (want != "leader" or role == "leader"):
            print(f"status={status} role={role}")
            sys.exit(0)
        last = f"HTTP {resp.status}, status={status!r}, role={role!r}"
    except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
        last = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if time.monotonic() >= deadline:
        print(last)
        sys.exit(1)
    time.sleep(interval)
PY
) || rc=$?
    return "$rc"
}

# Moves the service from the live slot to the idle one running NAME. ACTION is recorded in the history.
# Returns 0 when NAME serves and leads; 1 when it never became ready (nothing was switched, the live
# slot still serves); 2 when it failed after the switch and the old release serves and leads again; 4 when
# even that failed.
slot_handover() {
    local action=$1 name=$2 old=$3 from to t0
    from=$(active_slot)
    to=$(idle_slot "$from")
    PENDING_FROM_SLOT=$from
    now_us
    t0=$NOW_US
    if "${SYSTEMCTL_CMD[@]}" is-active "$SLOT_SERVICE$to" >/dev/null 2>&1 9>&-; then
        # A leftover of an interrupted run: it still runs some other release, so `start` would be a no-op.
        log "slot $to is still running from an earlier run: stopping it first"
        stop_slot "$to" || return 1
    fi
    log "hand-over: $name goes to slot $to; ${from:+slot $from (${old:-?}) }keeps serving until it is ready"
    point_slot "$to" "$name" || return 1
    if ! start_slot "$to" || ! wait_slot "$to" ready "$HEALTH_TIMEOUT"; then
        log "ERROR: slot $to ($name) did not become ready on its socket within ${HEALTH_TIMEOUT}s (last: $HEALTH_RESULT)"
        stop_slot "$to" || log "warning: stopping $SLOT_SERVICE$to failed"
        return 1
    fi
    log "slot $to is ready ($HEALTH_RESULT): it serves HTTP beside slot ${from:-none} and waits for the leader lease"
    PHASE=switched
    switch_logged "$name"
    history_append "$action" "$name" "$old"
    set_active_slot "$to"
    if "${SYSTEMCTL_CMD[@]}" is-active "$SERVICE" >/dev/null 2>&1 9>&-; then
        # The single unit, started by the socket while no slot ran (or left from the single layout).
        log "stopping the single unit $SERVICE: slot $to takes over"
        run_logged "${SYSTEMCTL_CMD[@]}" stop "$SERVICE" 9>&- || log "warning: stopping $SERVICE failed"
    fi
    if [[ -n $from ]] && ! stop_slot "$from"; then
        log "ERROR: stopping slot $from failed"
        slot_revert "$old" "$name" "$from" || return $?
        return 0
    fi
    if ! wait_slot "$to" leader "$LEASE_TIMEOUT"; then
        log "ERROR: slot $to did not take the leader lease within ${LEASE_TIMEOUT}s (last: $HEALTH_RESULT)"
        slot_revert "$old" "$name" "$from" || return $?
        return 0
    fi
    now_us
    PHASE=finished
    log "lease moved: slot $to ($name) is the leader ($HEALTH_RESULT); hand-over took $(fmt_s $((NOW_US - t0)))"
}

# The way back after the switch: the old release into its slot again, the same hand-over in reverse.
slot_revert() {
    local old=$1 new=$2 from=$3 to
    PHASE=reverting
    to=$(idle_slot "$from") # the new release's slot (releases/.slot may or may not name it yet)
    if [[ -z $old || -z $from ]]; then
        log "no earlier release to return to: stopping $SLOT_SERVICE$to and removing current"
        stop_slot "$to" || log "warning: stopping $SLOT_SERVICE$to failed"
        rm -f -- "$BASE/current" "$RELEASES/.slot"
        history_append auto-rollback - "$new"
        return 2
    fi
    log "switching back: $old returns to slot $from"
    point_slot "$from" "$old" || return 4
    if ! start_slot "$from" || ! wait_slot "$from" ready "$HEALTH_TIMEOUT"; then
        log "ERROR: slot $from ($old) is not ready either ($HEALTH_RESULT); $new stays live in slot $to"
        return 4
    fi
    switch_logged "$old" || return 4
    history_append auto-rollback "$old" "$new"
    set_active_slot "$from"
    stop_slot "$to" || log "warning: stopping $SLOT_SERVICE$to failed"
    if ! wait_slot "$from" leader "$LEASE_TIMEOUT"; then
        log "ERROR: $old is back in slot $from but does not hold the leader lease ($HEALTH_RESULT)"
        return 4
    fi
    log "switched back: $old serves and leads again in slot $from; $new stays in releases/ for inspection"
    return 2
}

deploy_usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

deploy_main() {
    local ref=${1:-HEAD} commit short name rel old t0 code
    case $ref in -h | --help) deploy_usage; return 0 ;; esac
    [[ $KEEP =~ ^[0-9]+$ ]] || die 1 "KEEP must be a whole number, got '$KEEP'"
    if [[ -z ${REPO:-} ]]; then
        REPO=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null) ||
            die 1 "$SCRIPT_DIR is not inside a git repository; set REPO"
    fi
    init_paths
    acquire_lock
    current_release >/dev/null # refuses now, not after the build, if `current` is not a symlink
    commit=$(git -C "$REPO" rev-parse --verify --quiet "$ref^{commit}") || die 1 "unknown git ref '$ref' in $REPO"
    short=$(git -C "$REPO" rev-parse --short "$commit")
    name=$(new_release_name "$short")
    rel=$RELEASES/$name
    log "deploying $ref ($commit) from $REPO as releases/$name"

    trap on_exit EXIT
    trap 'exit 130' INT TERM HUP
    BUILDING=$rel
    if ! build_release "$commit" "$rel"; then
        die 1 "building $name failed; nothing was switched, the running release is untouched"
    fi
    if ! smoke_test "$rel"; then
        die 1 "smoke test of $name failed; nothing was switched, the running release is untouched"
    fi
    BUILDING=""
    print_release_notes "$rel"

    old=$(current_release)
    log "active release: ${old:-none}"
    log_polling_mode
    PENDING_OLD=$old
    PENDING_NEW=$name
    if [[ $DEPLOY_LAYOUT == slots ]]; then
        code=0
        slot_handover deploy "$name" "$old" || code=$?
        PHASE=finished
        if ((code == 0)); then
            prune "$name"
            log "deployed $name"
            return 0
        fi
        ((code != 1)) || die 1 "$name never became ready in its slot; nothing was switched, the running release is untouched"
        exit "$code"
    fi
    PHASE=switched
    switch_logged "$name"
    history_append deploy "$name" "$old"
    now_us
    t0=$NOW_US
    if restart_service && wait_healthy; then
        now_us
        PHASE=finished
        log "$name is healthy ($HEALTH_RESULT); downtime (restart -> healthy): $(fmt_s $((NOW_US - t0)))"
        prune "$name"
        log "deployed $name"
        return 0
    fi
    log "ERROR: $name did not become healthy at $HEALTH_URL within ${HEALTH_TIMEOUT}s (last: $HEALTH_RESULT)"
    code=0
    revert "$old" "$name" || code=$?
    PHASE=finished
    exit "$code"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    deploy_main "$@"
fi
