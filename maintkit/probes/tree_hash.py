"""Tree hashes of package folders on a host: one value per folder over every regular file in it.

The hash is ``sha256`` over the ``sha256sum`` lines (``<hash>  ./<relative path>``, newline
ended) of every regular file under the folder, sorted bytewise by name; a single file hashes
as the line of ``./<its name>``. :func:`maintkit.actions.cms.snapshots.zip_tree_hash`
computes the same value from a package zip, so a package can be compared before and after
installing it, and a version lock records it.

:func:`tree_hash_script` reads it in one perl process for every folder, which walks the trees
and hands the file contents to ONE ``openssl dgst`` (hardware SHA-256 where the CPU has it,
several times faster than coreutils' ``sha256sum``) per batch of names; names with a newline,
a backslash or a carriage return (which ``openssl`` would escape) go to ``sha256sum --zero``.
Where perl, its ``Digest::SHA`` or ``openssl`` is missing, or anything answers unexpectedly,
the same values come from the portable shell loop (``find | sort | xargs sha256sum``, about
seven processes per folder): the perl program prints nothing unless it read everything.
"""

from __future__ import annotations

from maintkit.transport.base import quote

#: perl without the login's PERL5OPT (a ``-M`` or ``-d`` there would run first, or make every
#: run fail) and PERL5LIB/PERLLIB (modules found first there would replace the real ones)
PERL = "PERL5OPT= PERL5LIB= PERLLIB= perl"

#: the tree reader's perl, whose openssl reads no configuration of the login's (an
#: ``OPENSSL_CONF`` could load a provider that computes the digest)
_READER = f"OPENSSL_CONF=/dev/null {PERL}"

#: ends the perl program's answer: without it the shell loop answers instead
_END = "@@maint-trees-end"

# @ARGV: absolute paths. Exit 3 (nothing printed) on anything it cannot answer exactly as the
# shell loop would. Names go to the digest programs as absolute paths, in sorted order, and
# every answer must name them in that order: a file they could not read (no line, a non-zero
# exit) leaves the answer to the shell loop, which hashes what it can read.
_PROGRAM = r"""
use strict; use Digest::SHA ();
my (@out, @names, @where);
sub walk {
    my ($dir, $rel, $list) = @_;
    opendir(my $dh, $dir) or return;
    for my $e (readdir $dh) {
        next if $e eq '.' || $e eq '..';
        lstat("$dir/$e") or next;
        if (-d _) { walk("$dir/$e", "$rel/$e", $list) } elsif (-f _) { push @$list, "$rel/$e" }
    }
}
for my $i (0 .. $#ARGV) {
    my $p = $ARGV[$i];
    exit 3 if $p !~ m{\A/};
    if (-d $p) {
        $out[$i] = '';
        next unless chdir $p;
        $out[$i] = undef;
        my @rel;
        walk($p, '.', \@rel);
        for (sort @rel) { push @names, $p . substr($_, 1); push @where, [$i, $_] }
    } elsif (-f $p) {
        my ($dir, $base) = $p =~ m{\A(.*)/([^/]*)\z}s;
        $out[$i] = '';
        next unless chdir "$dir/";
        $out[$i] = undef;
        push @names, $p; push @where, [$i, "./$base"];
    } else {
        $out[$i] = 'missing';
    }
}
my @hex;
sub digest {
    my ($zero, @k) = @_;
    my @argv = $zero ? ('sha256sum', '--zero', '--') : ('openssl', 'dgst', '-sha256', '-r');
    open(my $h, '-|', @argv, map { $names[$_] } @k) or exit 3;
    local $/ = $zero ? "\0" : "\n";
    my $at = 0;
    while (my $rec = <$h>) {
        chomp $rec;
        exit 3 unless $rec =~ m{\A([0-9a-f]{64})(?:  | \*)(.*)\z}s;
        exit 3 unless $at < @k && $names[$k[$at]] eq $2;
        $hex[$k[$at++]] = $1;
    }
    close $h or exit 3;
    exit 3 unless $at == @k;
}
for my $zero (0, 1) {
    my @k = grep { ($names[$_] =~ /[\n\r\\]/) == $zero } 0 .. $#names;
    while (@k) {
        my ($n, $size) = (0, 0);
        $size += length($names[$k[$n++]]) + 1 while $n < @k && ($n == 0 || $size < 65536);
        digest($zero, splice(@k, 0, $n));
    }
}
my @text = map { '' } @ARGV;
$text[$where[$_][0]] .= "$hex[$_]  $where[$_][1]\n" for 0 .. $#names;
my @lines = map { ($out[$_] // Digest::SHA::sha256_hex($text[$_])) . "\n" } 0 .. $#ARGV;
print @lines, '@@END' or exit 3;
""".replace("@@END", _END)

#: the reader's command line up to its arguments (quoted once, not on every read)
_READER_COMMAND = f"{_READER} -e {quote(_PROGRAM)}"

_SNIPPET = (
    # sha256sum --zero: names are never escaped (a newline or backslash in a name would
    # otherwise change the line); the hash alone is printed, one line per path, in order
    'if [ -d "$p" ]; then '
    'h=$(cd -- "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --zero -- '
    "| tr '\\0' '\\n' | sha256sum); "
    'elif [ -f "$p" ]; then '
    "h=$(cd -- \"${p%/*}/\" && sha256sum --zero -- \"./${p##*/}\" | tr '\\0' '\\n' | sha256sum); "
    "else h=missing; fi; "
    "printf '%s\\n' \"${h%% *}\""
)


def tree_hash_loop(paths: list[str]) -> str:
    """The portable shell loop alone (see :func:`tree_hash_script`)."""
    return f"for p in {' '.join(quote(p) for p in paths)}; do {_SNIPPET}; done"


def tree_hash_script(paths: list[str]) -> str:
    """Shell that prints one line per path, in order: its tree hash, or ``missing`` (an empty
    line: a folder that could not be entered).

    One perl process hashes every path (see the module's docstring); without perl,
    ``Digest::SHA`` or ``openssl``, the portable loop (:func:`tree_hash_loop`) answers.
    """
    if not paths:
        return "true"
    args = " ".join(quote(p) for p in paths)
    end = quote(_END)
    return (
        f"mk_trees=$({_READER_COMMAND} -- {args} 2>/dev/null) && "
        f'case $mk_trees in *{end}) printf %s "${{mk_trees%{end}}}" ;; *) false ;; esac || '
        f"{tree_hash_loop(paths)}"
    )


def tree_lines(paths: list[str] | tuple[str, ...], stdout: str) -> dict[str, str | None]:
    """What :func:`tree_hash_script` printed, by path (None: missing or unreadable)."""
    out: dict[str, str | None] = {p: None for p in paths}
    for path, value in zip(paths, stdout.splitlines(), strict=False):
        out[path] = value if len(value) == 64 else None
    return out


__all__ = ["PERL", "tree_hash_loop", "tree_hash_script", "tree_lines"]
