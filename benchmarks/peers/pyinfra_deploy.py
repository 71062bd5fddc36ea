"""The benchmark's five steps as a pyinfra deploy (run by benchmarks/peers.py).

Each host's ``path`` comes from the inventory the harness writes (host data). The same work as
maint's playbook: a directory, a file with exactly this content, a symlink, ``uname -r`` and
``true``. pyinfra counts every ``server.shell`` as a change (it cannot know better): the harness
expects exactly those two on a second run and nothing else.
"""

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server

path = host.data.path

files.directory(name="directory", path=f"{path}/app")
files.put(name="file content", src=StringIO("hello from maint\n"), dest=f"{path}/app/config.txt")
files.link(name="symlink", path=f"{path}/current", target=f"{path}/app")
server.shell(name="uname", commands=["uname -r"])
server.shell(name="no-op command", commands=["true"])
