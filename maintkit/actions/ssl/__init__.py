"""``ssl.check``, ``ssl.renew``, ``ssl.issue``: TLS certificates, judged from the outside.

``ssl.check`` connects from the controller to the environment's host and reads the
certificate the server actually serves (not the file on disk): days left, issuer,
serial, whether its names cover the server name and whether its chain verifies.

``ssl.renew`` renews a certbot lineage on the host when it is due by *our* threshold
(``renew_days``), reloads the web server and then verifies from the outside that the
new certificate is served. ``ssl.issue`` obtains the first certificate of a lineage.

Modules: ``params`` (the parameters), ``served`` (the TLS handshake from the controller),
``certbot`` (certbot failures, the reload), ``check``, ``renew``, ``issue`` (the actions).
The certificate facts and the probes that read certificate files on a host are in
:mod:`maintkit.probes.ssl`.
"""

from maintkit.actions.ssl.check import SslCheck
from maintkit.actions.ssl.issue import SslIssue
from maintkit.actions.ssl.params import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_LOGS_DIR,
    SslCheckParams,
    SslIssueParams,
    SslRenewParams,
)
from maintkit.actions.ssl.renew import SslRenew
from maintkit.actions.ssl.served import Endpoint, Served, fetch_served, format_left, resolve_endpoint
from maintkit.probes.ssl import CertFile, CertInfo, OpensslEnddate, cert_info_from_der, cert_info_from_pem

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_LOGS_DIR",
    "CertFile",
    "CertInfo",
    "Endpoint",
    "OpensslEnddate",
    "Served",
    "SslCheck",
    "SslCheckParams",
    "SslIssue",
    "SslIssueParams",
    "SslRenew",
    "SslRenewParams",
    "cert_info_from_der",
    "cert_info_from_pem",
    "fetch_served",
    "format_left",
    "resolve_endpoint",
]
