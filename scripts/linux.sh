#!/usr/bin/env bash
# The project on a Linux machine. Every command first installs what it uses
# and is missing (Debian packages as root, rustup targets), so each works on a
# fresh machine:
#   scripts/linux.sh demo    build Sample.sys (x64, x86; clean, leaky) and show
#                            the emulated Driver Verifier verdicts (native
#                            engine: needs cmake and libclang-dev for Unicorn
#                            and the two msvc Rust targets, nothing else)
#   scripts/linux.sh test    all tests, lints included: installs everything
#                            (MinGW, Wine with 32-bit Wine, Speakeasy, ...)
#   scripts/linux.sh setup   only the full installs
set -euo pipefail
cd "$(dirname "$0")/.."

# What the demo (native engine) needs: Unicorn's build (unicorn-engine-sys
# builds its C with CMake and binds it with bindgen) and the driver's targets.
DEMO_APT_PACKAGES=(cmake libclang-dev)
DEMO_RUST_TARGETS=(x86_64-pc-windows-msvc i686-pc-windows-msvc)

# What the tests need besides.
TEST_APT_PACKAGES=(
  gcc-mingw-w64-x86-64 gcc-mingw-w64-i686  # samplectl.exe, C test drivers
  wine wine64                              # Wine engine and samplectl tests
  python3-venv                             # Speakeasy's virtualenv
  osslsigncode openssl                     # test-signing the x64 driver (signature, certificate)
  openssh-client                           # harness vm
  tmux                                     # the harness kd interactive test drives the kd> prompt in a terminal
)
TEST_RUST_TARGETS=(x86_64-pc-windows-gnu i686-pc-windows-gnu)

# Installs the Debian packages given that are missing (one apt-get call).
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "linux.sh: run as root, or install: apt-get install ${missing[*]}" >&2; exit 2; }
    sudo=(sudo)
  fi
  echo "linux.sh: installing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Adds the rustup targets given that are missing (listing them is quicker
# than `rustup target add` of installed ones).
rust_targets() {
  command -v rustup >/dev/null || { echo "linux.sh: rustup not found: install Rust from https://rustup.rs" >&2; exit 2; }
  local installed missing=()
  installed=$(rustup target list --installed)
  for target in "$@"; do
    grep -qx "$target" <<<"$installed" || missing+=("$target")
  done
  ((${#missing[@]})) || return 0
  echo "linux.sh: adding Rust targets: ${missing[*]}" >&2
  rustup target add "${missing[@]}" >/dev/null
}

demo_setup() {
  apt_install "${DEMO_APT_PACKAGES[@]}"
  rust_targets "${DEMO_RUST_TARGETS[@]}"
}

setup() {
  apt_install "${DEMO_APT_PACKAGES[@]}" "${TEST_APT_PACKAGES[@]}"
  wine32
  rust_targets "${DEMO_RUST_TARGETS[@]}" "${TEST_RUST_TARGETS[@]}"
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
  cargo run -q --locked -p harness -- setup >/dev/null
}

# 32-bit Wine (wine32:i386) lets the Wine engine load x86 drivers. It
# needs the i386 architecture; if it cannot be installed (an i386 index that
# fails to download makes apt refuse), the architecture is removed again, so
# that apt-get update keeps working, and the setup goes on without it.
wine32() {
  dpkg-query -W -f='${Status}' wine32:i386 2>/dev/null | grep -q "ok installed" && return 0
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "linux.sh: 32-bit Wine not tried (needs root): the Wine engine runs x64 drivers only" >&2; return 0; }
    sudo=(sudo)
  fi
  local added=0
  if ! dpkg --print-foreign-architectures | grep -qx i386; then
    "${sudo[@]}" dpkg --add-architecture i386
    added=1
  fi
  if "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends wine32:i386 >/dev/null 2>&1; then
    echo "linux.sh: installed 32-bit Wine (wine32:i386)" >&2
    return 0
  fi
  if ((added)); then
    "${sudo[@]}" dpkg --remove-architecture i386 || true
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
  fi
  echo "linux.sh: 32-bit Wine (wine32:i386) is not installable here; going on without it: the Wine engine runs x64 drivers only" >&2
}

lint() {
  cargo fmt --all -- --check
  cargo clippy -q --locked --workspace --all-targets -- -D warnings
  # samplectl's SCM code and the driver only compile for Windows targets.
  cargo clippy -q --locked -p samplectl --target x86_64-pc-windows-gnu -- -D warnings
  for triple in x86_64-pc-windows-msvc i686-pc-windows-msvc; do
    for features in portable portable,leak-on-unload portable,double-free portable,paged-at-dispatch portable,leak-on-error portable,overrun portable,read-after-free; do
      cargo clippy -q --locked -p sample --bin Sample --features "$features" --target "$triple" -- -D warnings
    done
  done
  # The workspace's rustdoc lints, as errors.
  RUSTDOCFLAGS="-D warnings" cargo doc -q --locked --no-deps -p sample -p harness \
    -p harness-core -p harness-kd-text -p harness-build -p harness-ntemu -p harness-debugger -p harness-engines
}

case "${1:-}" in
  setup) setup ;;
  demo) demo_setup; cargo run -q --locked -p harness -- demo ;;
  test)
    setup
    lint
    log=$(mktemp)
    wine_log=$(mktemp)
    wine_tests=
    # The background run is a session of its own (Ctrl-C does not reach it):
    # it is stopped here, whatever ends this script.
    trap 'if [ -n "$wine_tests" ]; then kill -TERM -- -"$wine_tests" 2>/dev/null || true; fi; rm -f "$log" "$wine_log"' EXIT
    cargo test --locked --workspace --no-run
    # The tests named "wine" run beside the others: they take turns on one
    # Wine prefix (about 3.5 minutes in a row on two cores), and libtest
    # starts tests in name order, so in one run they came last, alone.
    # Four threads for the others on two cores: most tests wait on the
    # engines' processes.
    setsid cargo test --locked --workspace -- --test-threads 2 wine >"$wine_log" 2>&1 &
    wine_tests=$!
    status=0
    cargo test --locked --workspace -- --test-threads 4 --skip wine 2>&1 | tee "$log" || status=1
    wait "$wine_tests" || status=1
    echo "--- the tests named \"wine\" (run alongside) ---"
    tee -a "$log" <"$wine_log"
    # One closing line over every test binary (cargo prints one per binary).
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
         END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
    exit "$status"
    ;;
  *) echo "usage: scripts/linux.sh demo|test|setup" >&2; exit 2 ;;
esac
