"""The shell the lock scripts of :mod:`maintkit.locks` are made of (builtins wherever they can be).

``fields`` reads a holder's ``gen`` and ``expires_epoch``; ``claim`` creates a generation's
claim; the host's clock and the lease's end are read by bash's printf builtin or one ``date``
call; ``stamp FILE`` writes a holder; the takeover of an expired lease; the release's way
without a claim while the lease has time left. Every value is quoted here; nothing parses a
program's output.
"""

from __future__ import annotations

import json
from typing import Any

from maintkit.transport.base import quote

#: exit status of the lock script when the lock cannot be created (disk full, permissions)
LOCK_FAILED_EXIT = 70
#: default lease of a site lock, in seconds (inventory ``defaults.lock_lease``)
DEFAULT_LEASE = 600
#: seconds of lease the release wants left to remove the lock without claiming it first
RELEASE_MARGIN = 60
#: printed by the lock scripts before the host's clock (``@@now EPOCH``)
NOW_MARK = "@@now "
#: printed by the lock script, followed by the dead holder, when it took over an expired lease
TAKEN_MARK = "MAINT-TAKEN-OVER"
#: a claim directory older than this (minutes) was left by a script that died mid-way
_STALE_CLAIM_MINUTES = 1
#: the date format of ``expires``, after the epoch seconds (one ``date`` call prints both)
_DATE_FMT = "+%s %Y-%m-%dT%H:%M:%SZ"
#: Shell functions reading the holder's ``gen`` and ``expires_epoch`` with builtins only (no
#: process): ``fields`` sets ``hg`` and ``he`` from ``$L/holder.json``. Each is the value of the
#: first line holding one, and in that line the last ``"gen": "HEX"`` (followed by its closing
#: quote) or ``"expires_epoch": DIGITS``: exactly ``sed -n 's/.*"gen": "\([0-9a-f][0-9a-f]*\)".*/\1/p'``
#: (and the ``expires_epoch`` one) piped to ``head -n 1``. Empty when absent or malformed. A
#: value's closing quote may open the next key, so the line is cut back to that quote, not before it.
_FIELDS = r"""_gk='"gen": "'; _ek='"expires_epoch": '
_gen_in() {
  _r=$1
  while :; do
    case $_r in *"$_gk"*) ;; *) return 0 ;; esac
    _t=${_r##*"$_gk"}; _v=${_t%%[!0123456789abcdef]*}
    case $_t in "$_v"'"'*) [ -n "$_v" ] && { hg=$_v; return 0; } ;; esac
    _r=${_r%"$_gk"*}'"'
  done
}
_exp_in() {
  _r=$1
  while :; do
    case $_r in *"$_ek"*) ;; *) return 0 ;; esac
    _t=${_r##*"$_ek"}; _v=${_t%%[!0123456789]*}
    [ -n "$_v" ] && { he=$_v; return 0; }
    _r=${_r%"$_ek"*}
  done
}
fields() {
  hg=; he=
  while IFS= read -r _l || [ -n "$_l" ]; do
    [ -n "$hg" ] || _gen_in "$_l"
    [ -n "$he" ] || _exp_in "$_l"
    [ -z "$hg" ] || [ -z "$he" ] || break
  done 2>/dev/null <"$L/holder.json"
  _l=
}
"""


def lock_dir(path: str) -> str:
    """The lock directory of an environment whose path is ``path``."""
    return path.rstrip("/") + "/.maint/lock"


#: bash's clock without a process: sets ``now`` (epoch seconds) and succeeds; fails in any other
#: shell, and in a bash without ``%(...)T`` (the callers still check that ``now`` is digits)
BASH_CLOCK = """[ -n "${BASH_VERSION-}" ] && printf -v now '%(%s)T' -1 2>/dev/null"""
#: ``YYYY-MM-DDTHH:MM:SS+0000``, the expiry as bash's printf formats it under ``TZ=UTC0``
_UTC_ISO = "-".join(["[0-9]" * 4, "[0-9]" * 2, "[0-9]" * 2]) + "T" + ":".join(["[0-9]" * 2] * 3) + "+0000"


def now_and_expiry(lease: int) -> str:
    """Shell setting ``now``, ``exp`` (epoch) and ``iso`` (UTC ISO) from the host's clock.

    bash >= 4.2: its printf builtin (no process), trusted only when ``now`` is digits and the
    expiry formatted under ``TZ=UTC0`` says ``+0000`` (``%z``; a bash ignoring the temporary
    TZ shows the login user's offset). Otherwise (dash): one ``date`` call (GNU, then BSD),
    and with neither the portable two calls.
    """
    n = int(lease)
    fmt = quote(_DATE_FMT)
    return (
        f"exp=; now=; iso=; if {BASH_CLOCK}; then\n"
        f'  case $now in ""|*[!0123456789]*) ;; *) exp=$((now + {n}))\n'
        """    TZ=UTC0 printf -v iso '%(%Y-%m-%dT%H:%M:%S%z)T' "$exp" 2>/dev/null\n"""
        f"    case $iso in {_UTC_ISO}) iso=${{iso%+0000}}Z ;; *) exp= ;; esac ;; esac\n"
        'fi; if [ -z "$exp" ]; then\n'
        f"x=$(exec date -u -d '{n} seconds' {fmt} 2>/dev/null) || x=$(exec date -u -v{n:+d}S {fmt} 2>/dev/null) "
        "&& { exp=${x%% *}; iso=${x#* }; }\n"
        "case $exp in\n"
        f'  ""|*[!0123456789]*) now=$(date -u +%s) || exit {LOCK_FAILED_EXIT}; exp=$((now + {n}))\n'
        '    iso=$(date -u -d "@$exp" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$exp" +%Y-%m-%dT%H:%M:%SZ) ;;\n'
        f"  *) now=$((exp - {n})) ;;\n"
        "esac; fi\n"
    )


def stamp_function(holder: dict[str, Any]) -> str:
    """Shell defining ``stamp FILE``: ``holder`` plus ``expires``/``expires_epoch`` (host clock)
    written into FILE by the printf builtin (no process; an expanded value is never expanded
    again), and when that fails (a full disk) the same bytes through cat from a here-document,
    for cat's message (not dash's "I/O error")."""
    prefix = json.dumps(holder)[:-1]  # without its closing brace: the host appends the expiry
    line = quote('%s, "expires": "%s", "expires_epoch": %s}\\n')
    return now_and_expiry(int(holder.get("lease", DEFAULT_LEASE))) + (
        f"P={quote(prefix)}\n"
        f'stamp() {{ printf {line} "$P" "$iso" "$exp" > "$1" 2>/dev/null || cat > "$1" <<MAINT_HOLDER\n'
        '$P, "expires": "$iso", "expires_epoch": $exp}\n'
        "MAINT_HOLDER\n}\n"
    )


def lock_vars(path: str) -> str:
    """Shell: ``L`` (the lock directory), ``fields`` (sets ``hg``/``he``, the ``gen`` and
    ``expires_epoch`` of its holder) and ``claim GEN`` (atomically create ``$L/claim.GEN``; a
    claim left by a dead script is cleared first)."""
    return (
        f"L={quote(lock_dir(path))}\n"
        + _FIELDS
        # only an existing claim is looked at; the lock directory is an absolute path: find needs no "--"
        + f'claim() {{ if [ -d "$L/claim.$1" ]; then find "$L" -maxdepth 1 -name "claim.$1" '
        f"-mmin +{_STALE_CLAIM_MINUTES} "
        '-exec rmdir {} \\; 2>/dev/null; fi; mkdir -- "$L/claim.$1" 2>/dev/null; }\n'
    )


#: the lock script's takeover of an expired lease (inside its loop; ``now`` and ``T`` are set)
TAKEOVER = (
    "    fields; og=$hg; oe=$he\n"
    '    if [ -n "$og" ] && [ -n "$oe" ] && [ "$now" -ge "$oe" ] && claim "$og"; then\n'
    f'      stamp "$T" || {{ rm -f -- "$T"; rmdir -- "$L/claim.$og"; exit {LOCK_FAILED_EXIT}; }}\n'
    '      old=$(cat -- "$L/holder.json")\n'
    "      fields\n"
    '      if [ "$hg" = "$og" ] && [ "$he" = "$oe" ] && mv -f -- "$T" "$L/holder.json"; then\n'
    '        rmdir -- "$L/claim.$og"\n'
    f'        echo {TAKEN_MARK}; printf \'%s\\n\' "$old"; echo "{NOW_MARK}$now"; exit 0\n'
    "      fi\n"
    '      rmdir -- "$L/claim.$og"; rm -f -- "$T"\n'
    "    fi\n"
)


def release_in_lease(g: str) -> str:
    """The release's way without a claim of its own (inside ``if [ "$hg" = GEN ]``; ``he`` is
    set; ``g`` is the quoted generation). bash reads the host's clock with its printf builtin;
    while the lease has more than :data:`RELEASE_MARGIN` seconds left no other run may take the
    lock over (a takeover waits for the lease's end), and when no claim of this generation is
    there (no renewal or unlock of it under way), the lock is removed at once. Any other shell,
    a lease about to end, or a claim there: the release claims first, as always."""
    return (
        f"  now=; {BASH_CLOCK}\n"
        '  case $now in ""|*[!0123456789]*) now= ;; esac\n'
        '  if [ -n "$now" ] && [ -n "$he" ] && [ "${#he}" -le 12 ] && [ "${#now}" -le 12 ] '
        f'&& [ "$((he - now))" -gt {RELEASE_MARGIN} ] && [ ! -d "$L/claim."{g} ]; then\n'
        '    rm -rf -- "$L"; exit $?\n'
        "  fi\n"
    )
