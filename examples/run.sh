#!/usr/bin/env bash
# Runs the access-change story of examples/NN-*.json against a real log.
#
#   examples/run.sh                  # starts its own log in a temp dir, stops it at the end
#   ADMIN_KEY=data/admin.key examples/run.sh http://127.0.0.1:8080   # a log you run
#
# A log you run must not know the story's actors (alice, bob, deployer,
# copilot) or chains (CHG-1042, CHG-1043, INC-7731) yet: use a fresh one.
#
# The statement files are complete proto3 JSON, but the values only known
# once earlier entries exist (public keys, and the index and leafHash of
# every link) hold the values of one reference run. This script fills in
# the real ones with jq from each `gatelog submit` answer (index,
# leaf_hash), submits, and checks every outcome: it exits non-zero if any
# step is refused or admitted unexpectedly.
#
# KEEP=1 keeps the work directory (the filled-in statements, the actors'
# keys, the tlog-proof bundles and the server's output).
#
# Needs: bash 4, jq, curl, and the gatelog binary (GATELOG=/path/to/gatelog,
# or `gatelog` on PATH, or a cargo release build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() {
    echo "run.sh: FAIL: $*" >&2
    exit 1
}

for tool in jq curl; do
    command -v "$tool" >/dev/null || fail "$tool is needed (apt-get install -y $tool)"
done

find_gatelog() {
    local candidate
    for candidate in \
        "${GATELOG:-}" \
        "$(command -v gatelog || true)" \
        "${CARGO_TARGET_DIR:-$HERE/../target}/release/gatelog"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return
        fi
    done
    fail "no gatelog binary: run tools/serve (or cargo build --release), or set GATELOG"
}
GATELOG=$(find_gatelog)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatelog-example.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "${KEEP:-}" ]]; then
        echo "run.sh: kept $WORK (filled-in statements, keys, proofs, server output)"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
mkdir -p "$WORK/keys" "$WORK/statements" "$WORK/proofs"

# --- The log --------------------------------------------------------------

if [[ $# -ge 1 ]]; then
    URL=${1%/}
    ADMIN_KEY=${ADMIN_KEY:?"with a log URL, set ADMIN_KEY to the admin's private key file"}
    VKEY=${VKEY:?"with a log URL, set VKEY to the log's verifier key (from a source you trust)"}
else
    # Port 0: the server picks a free port and prints it.
    "$GATELOG" serve --dev --data-dir "$WORK/log" --listen 127.0.0.1:0 >"$WORK/server.out" 2>&1 &
    SERVER_PID=$!
    URL=""
    for _ in $(seq 100); do
        URL=$(sed -n 's/^gatelog: listening on //p' "$WORK/server.out")
        [[ -n "$URL" ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.out" >&2; fail "the server did not start"; }
        sleep 0.1
    done
    [[ -n "$URL" ]] || { cat "$WORK/server.out" >&2; fail "the server did not start listening"; }
    ADMIN_KEY="$WORK/log/admin.key" # generated on first start, id "admin"
    VKEY=$(sed -n 's/^gatelog: verifier key //p' "$WORK/server.out") # the server's own word
fi
echo "log:   $URL"
echo "gatelog: $GATELOG"

# --- Keys -----------------------------------------------------------------

declare -A KEY PUBKEY
KEY[admin]=$ADMIN_KEY
for who in alice bob deployer copilot; do
    KEY[$who]="$WORK/keys/$who.key"
    PUBKEY[$who]=$("$GATELOG" keygen --id "$who" --out "${KEY[$who]}" |
        sed -n 's/^publicKey for an identityRegistration: //p')
    [[ -n "${PUBKEY[$who]}" ]] || fail "keygen printed no public key for $who"
done

# --- Submitting -----------------------------------------------------------

declare -A INDEX LEAF # by step number: where each admitted entry landed

# ref STEP: the EntryRef of an admitted step, as JSON.
ref() {
    [[ -n "${INDEX[$1]:-}" ]] || fail "step $1 has no entry to link"
    jq -cn --arg i "${INDEX[$1]}" --arg h "${LEAF[$1]}" '{index: $i, leafHash: $h}'
}

# prepare STEP JQ_FILTER [jq args...]: the step's file with the real values
# filled in; prints the path of the statement to submit.
prepare() {
    local step=$1 filter=$2
    shift 2
    local files=("$HERE/$step"-*.json)
    [[ -f "${files[0]}" ]] || fail "no examples/$step-*.json"
    local out="$WORK/statements/$(basename "${files[0]}")"
    jq "$@" "$filter" "${files[0]}" >"$out"
    echo "$out"
}

# admit STEP SIGNER [JQ_FILTER [jq args...]]: submits; must be appended.
admit() {
    local step=$1 signer=$2 filter=${3:-.}
    shift $(($# < 3 ? $# : 3))
    local file answer
    file=$(prepare "$step" "$filter" "$@")
    if ! answer=$("$GATELOG" submit --log "$URL" --vkey "$VKEY" --key "${KEY[$signer]}" \
        --proof-out "$WORK/proofs/$step.tlog-proof" "$file" 2>"$WORK/stderr"); then
        cat "$WORK/stderr" >&2
        fail "step $step ($(basename "$file")) was not admitted"
    fi
    INDEX[$step]=$(jq -r .index <<<"$answer")
    LEAF[$step]=$(jq -r .leaf_hash <<<"$answer")
    printf '  %-40s %-9s -> index %s\n' "$(basename "$file")" "$signer" "${INDEX[$step]}"
}

# refuse STEP SIGNER EXPECTED_CODES JQ_FILTER [jq args...]: submits; the
# gate must refuse it (HTTP 403, exit 1) naming exactly EXPECTED_CODES
# (comma-separated), and log a refusal record.
refuse() {
    local step=$1 signer=$2 expected=$3 filter=$4
    shift 4
    local file status=0
    file=$(prepare "$step" "$filter" "$@")
    "$GATELOG" submit --log "$URL" --vkey "$VKEY" --key "${KEY[$signer]}" \
        --proof-out "$WORK/proofs/$step.tlog-proof" "$file" >/dev/null 2>"$WORK/stderr" || status=$?
    [[ $status -eq 1 ]] || { cat "$WORK/stderr" >&2; fail "step $step: submit exited $status, expected 1"; }
    grep -q '^gatelog: the log refused the statement (HTTP 403):' "$WORK/stderr" ||
        { cat "$WORK/stderr" >&2; fail "step $step: not refused with HTTP 403"; }
    local error codes
    error=$(sed 1d "$WORK/stderr" | jq -c .error)
    [[ $(jq -r .code <<<"$error") == gate_refused ]] || fail "step $step: $error"
    codes=$(jq -r '[.violations[].code] | join(",")' <<<"$error")
    [[ "$codes" == "$expected" ]] || fail "step $step: violations $codes, expected $expected"
    INDEX[$step]=$(jq -r .refusal_record.index <<<"$error")
    printf '  %-40s %-9s -> refused (403): %s; refusal record at index %s\n' \
        "$(basename "$file")" "$signer" "$codes" "${INDEX[$step]}"
    jq -r '.violations[] | "      rule \(.rule) \(.code): \(.message)"' <<<"$error"
}

# expect_status CHAIN STATUS
expect_status() {
    local got
    got=$(curl -sf "$URL/v1/chains/$1" | jq -r .status) || fail "GET /v1/chains/$1 failed"
    [[ "$got" == "$2" ]] || fail "chain $1 is $got, expected $2"
    echo "  chain $1: $got"
}

# open_obligations CHAIN: how many open reviews the chain has.
open_obligations() {
    curl -sf "$URL/v1/obligations" | jq --arg c "$1" '[.obligations[] | select(.chain_id == $c)] | length'
}

# --- The story ------------------------------------------------------------

echo "admin registers the cast, publishes the policy, delegates to bob:"
admit 01 admin '.identityRegistration.publicKey = $k' --arg k "${PUBKEY[alice]}"
admit 02 admin '.identityRegistration.publicKey = $k' --arg k "${PUBKEY[bob]}"
admit 03 admin '.identityRegistration.publicKey = $k' --arg k "${PUBKEY[deployer]}"
admit 04 admin '.identityRegistration.publicKey = $k' --arg k "${PUBKEY[copilot]}"
admit 05 admin
admit 06 admin

echo "CHG-1042: request, recommendation, delegated approval, execution:"
admit 07 alice
admit 08 copilot '.links = [$req]' --argjson req "$(ref 07)"
expect_status CHG-1042 recommended
# An approval lasts at most what the policy allows (7 days by default).
EXPIRES=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
admit 09 bob '.links = [$req] | .onBehalfOf.delegation = $grant | .decision.expiresAt = $exp' \
    --argjson req "$(ref 07)" --argjson grant "$(ref 06)" --arg exp "$EXPIRES"
expect_status CHG-1042 approved
admit 10 deployer '.links = [$req, $dec]' --argjson req "$(ref 07)" --argjson dec "$(ref 09)"
admit 11 deployer '.links = [$intent]' --argjson intent "$(ref 10)"
expect_status CHG-1042 executed

echo "CHG-1043: alice approves her own request; the gate refuses it, and the intent:"
# Her approval is refused when made: she requested it (self_approval) and
# gains the access (subject_approves). The intent then has no approval
# (rule 1), and the policy wants a human one (rule 7).
admit 12 alice
refuse 13 alice self_approval,subject_approves '.links = [$req] | .decision.expiresAt = $exp' \
    --argjson req "$(ref 12)" --arg exp "$EXPIRES"
refuse 14 deployer no_approval,policy_denies '.links = [$req]' --argjson req "$(ref 12)"
expect_status CHG-1043 refused
[[ $(curl -sf "$URL/v1/chains/CHG-1043" |
    jq -r --arg i "${INDEX[14]}" '.entries[] | select(.index == ($i | tonumber)) | .kind') == gateRefusal ]] ||
    fail "the refusal record ${INDEX[14]} is not in chain CHG-1043"

echo "INC-7731: bob breaks glass and executes; alice ratifies it afterwards:"
DEADLINE=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
admit 15 bob '.breakGlass.reviewDeadline = $dl' --arg dl "$DEADLINE"
admit 15b bob '.links = [$bg]' --argjson bg "$(ref 15)"
expect_status INC-7731 break_glass_awaiting_review
[[ $(open_obligations INC-7731) == 1 ]] || fail "no open review obligation for INC-7731"
echo "  open obligation: $(curl -sf "$URL/v1/obligations" | jq -c '.obligations[0]')"
admit 16 alice '.links = [$bg]' --argjson bg "$(ref 15)"
expect_status INC-7731 reviewed
[[ $(open_obligations INC-7731) == 0 ]] || fail "the review did not close INC-7731's obligation"

echo "curl -s $URL/v1/chains/CHG-1042 | jq .status"
curl -s "$URL/v1/chains/CHG-1042" | jq .status
echo "run.sh: every step went as expected"
