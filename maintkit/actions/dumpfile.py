"""A database dump kept on a host as a rollback point: zstd where the host has it, else gzip.

One recorded path stands for two files, ``<stem>.zst`` and ``<stem>.gz`` (:func:`dump_files`).
The shell that writes the dump picks zstd when ``command -v zstd`` finds it
(:func:`choose_file` sets ``$mk_o`` to the file, :func:`compressor` compresses into it), and the
shell that reads it back (:func:`unpack_command`) reads the one that exists. Both names are
computed from the recorded path, never taken from the host's output; a path recorded before
zstd (``<stem>.gz``) has no ``.zst`` beside it and is read with gzip. Once the dump is written,
its script says which of the two it wrote (:func:`report_written`), and the action records that
one (:func:`written_file`): the output only picks between the two computed names, so the change
record names the real file and a rollback still computes both. Used by ``cms.update`` and
``staging.refresh`` for the dump they take before they change a database.
"""

from __future__ import annotations

from maintkit.actions.compression import GZIP_FAST, HAS_ZSTD, ZSTD_ONE_THREAD, decompress_argv
from maintkit.transport.base import join, quote


def dump_files(dump: str) -> tuple[str, str]:
    """``(<stem>.zst, <stem>.gz)``, where the stem is ``dump`` without its ``.zst`` or ``.gz``."""
    stem = dump.removesuffix(".zst") if dump.endswith(".zst") else dump.removesuffix(".gz")
    return stem + ".zst", stem + ".gz"


def choose_file(dump: str) -> str:
    """Shell setting ``mk_o`` to the ``.zst`` file when the host has zstd, else to the ``.gz`` one."""
    zst, gz = (quote(path) for path in dump_files(dump))
    return f"mk_o={gz}; {HAS_ZSTD} && mk_o={zst}"


def compressor(dump: str) -> str:
    """Shell compressing stdin to stdout for the file :func:`choose_file` chose: ``zstd`` at its
    default level on one thread (it keeps up with the dump), else ``gzip -1``."""
    zst, _ = dump_files(dump)
    return f'if [ "$mk_o" = {quote(zst)} ]; then {ZSTD_ONE_THREAD}; else {GZIP_FAST}; fi'


def unpack_command(dump: str) -> str:
    """Shell writing the dump to stdout, decompressed: the ``.zst`` file when it exists, else the
    ``.gz`` one."""
    zst, gz = dump_files(dump)
    unzstd, gunzip = join(decompress_argv("zstd", zst)), join(decompress_argv("gzip", gz))
    return f"if [ -f {quote(zst)} ]; then {unzstd}; else {gunzip}; fi"


#: the line :func:`report_written` prints for each of the two files
WROTE_ZST, WROTE_GZ = "mk-dump-wrote-zst", "mk-dump-wrote-gz"


def report_written(dump: str) -> str:
    """Shell printing, on a line of its own, which of ``dump``'s two files :func:`choose_file`
    chose (:data:`WROTE_ZST` or :data:`WROTE_GZ`); run it once the dump succeeded."""
    zst, _ = dump_files(dump)
    return f'if [ "$mk_o" = {quote(zst)} ]; then echo {WROTE_ZST}; else echo {WROTE_GZ}; fi'


def written_file(dump: str, output: str) -> str:
    """The one of ``dump``'s two files that ``output`` (the dump script's, with
    :func:`report_written`'s line) says was written; ``dump`` itself when it says neither."""
    zst, gz = dump_files(dump)
    lines = output.split("\n")
    if WROTE_GZ in lines:
        return gz
    return zst if WROTE_ZST in lines else dump
