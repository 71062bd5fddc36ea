"""Lab setup for the CMS update tests: real WordPress sites and composer shop projects.

WordPress: :func:`build_wordpress_template` installs WordPress 6.1 (Debian's
/usr/share/wordpress) once per session with a ``shop-cart`` test plugin (a tiny
WooCommerce stand-in: its ``[shop_cart]`` shortcode renders the /cart/ page) and keeps
the tree plus a SQL dump of the installed database; :meth:`WpTemplate.make_site` copies
both into a fresh site (own directory, own database and user, own nginx server block,
owned by a login user) in about a second.

Packages: :func:`make_plugin_zip` builds ``<slug>-<version>.zip`` files;
``shop-cart`` 1.1.0 is a good update and 1.2.0 (``broken=True``) dies with a PHP fatal
error on the cart page. :func:`make_composer_artifacts` and :func:`make_composer_project`
build an offline composer project with an artifact repository.

Helpers :func:`tree_digest` (hash a directory tree) and :func:`wp_plugin_version` read
what is really on disk, for assertions.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import textwrap
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.mariadb import MariaDB
from tests.lab.web import SiteHandle, WebStack

WP_SOURCE = Path("/usr/share/wordpress")
MARIADB_CLIENT = "/usr/bin/mariadb"

SHOP_CART_MAIN = """<?php
/**
 * Plugin Name: Shop Cart
 * Description: A small shop cart for the maintkit lab (a WooCommerce stand-in).
 * Version: {version}
 * Requires at least: {requires_wp}
 * Requires PHP: {requires_php}
 */
if (!defined('ABSPATH')) {{
    exit;
}}
define('SHOP_CART_VERSION', '{version}');
require_once __DIR__ . '/includes/cart.php';
add_shortcode('shop_cart', 'shop_cart_render');
add_action('init', function () {{
    if (get_option('shop_cart_db_version') !== '{schema}') {{
        global $wpdb;
        $table = $wpdb->prefix . 'shop_cart_items_{schema_table}';
        $wpdb->query("CREATE TABLE IF NOT EXISTS `$table` (id INT PRIMARY KEY AUTO_INCREMENT, sku VARCHAR(64))");
        update_option('shop_cart_db_version', '{schema}');
    }}
}});
"""

SHOP_CART_CSS_HOOK = """add_action('wp_head', function () {
    echo '<style id="shop-cart-css">' . file_get_contents(__DIR__ . '/assets/shop-cart.css') . '</style>';
});
"""

CART_GOOD = """<?php
function shop_cart_render() {{
    return '<div class="shop-cart">Your cart is empty (shop-cart {version})</div>';
}}
"""

CART_BROKEN = """<?php
function shop_cart_render() {{
    // 1.2.0 regression: calls a function that no longer exists.
    return shop_cart_totals_v2_missing();
}}
"""


def _run(
    argv: list[str], *, cwd: str | Path | None = None, input: bytes | None = None, env: dict[str, str] | None = None
) -> str:
    res = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, timeout=300, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({res.returncode}): {res.stderr.decode(errors='replace')[-2000:]}")
    return res.stdout.decode(errors="replace")


def chown_tree(path: Path, owner: str) -> None:
    """chown -R ``owner``:its group (symlinks themselves, not their targets)."""
    pw = pwd.getpwnam(owner)
    _run(["chown", "-hR", f"{pw.pw_uid}:{pw.pw_gid}", str(path)])


# -- packages ----------------------------------------------------------------------------------


def shop_cart_files(
    version: str,
    *,
    broken: bool = False,
    requires_php: str = "7.4",
    requires_wp: str = "5.8",
    schema: str = "1",
    css: str | None = None,
    commerce: bool = False,
    store_api: bool = False,
    broken_cart_item: bool = False,
) -> dict[str, str]:
    """The files of one shop-cart version (relative path -> text).

    ``css``: a stylesheet the release prints into every page's ``<head>`` (``assets/shop-cart.css``);
    a release that only restyles the shop (every page still answers 200).
    ``commerce``: a WooCommerce-shaped shop (a product page, a cookie cart, a checkout page; see
    :mod:`tests.shop_commerce`), ``store_api`` with the Store API routes, ``broken_cart_item``
    breaking only the cart with an item in it (either implies ``commerce``).
    """
    if commerce or store_api or broken_cart_item:
        from tests.shop_commerce import MAIN_REQUIRE, commerce_files

        files = shop_cart_files(
            version, broken=broken, requires_php=requires_php, requires_wp=requires_wp, schema=schema, css=css
        )
        files["shop-cart.php"] += MAIN_REQUIRE
        extra = commerce_files(version, store_api=store_api, broken_cart_item=broken_cart_item)
        if broken:  # the always-broken cart stays broken
            extra.pop("includes/cart.php")
        return {**files, **extra}
    if css is not None:
        files = shop_cart_files(
            version, broken=broken, requires_php=requires_php, requires_wp=requires_wp, schema=schema
        )
        files["shop-cart.php"] += SHOP_CART_CSS_HOOK
        files["assets/shop-cart.css"] = css
        return files
    main = SHOP_CART_MAIN.format(
        version=version, requires_php=requires_php, requires_wp=requires_wp, schema=schema, schema_table=schema
    )
    cart = (CART_BROKEN if broken else CART_GOOD).format(version=version)
    return {
        "shop-cart.php": main,
        "includes/cart.php": cart,
        "readme.txt": f"=== Shop Cart ===\nStable tag: {version}\n",
    }


def make_plugin_zip(
    out_dir: Path,
    slug: str,
    version: str,
    files: dict[str, str] | None = None,
    *,
    name: str | None = None,
) -> Path:
    """Write ``out_dir/<slug>-<version>.zip`` holding ``<slug>/<files>``; return its path.

    Without ``files`` a minimal plugin with a header (Version) is written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {
            f"{slug}.php": f"<?php\n/**\n * Plugin Name: {name or slug}\n * Version: {version}\n */\n",
        }
    path = out_dir / f"{slug}-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(f"{slug}/", date_time=(2024, 1, 1, 0, 0, 0)), "")
        for rel, text in sorted(files.items()):
            info = zipfile.ZipInfo(f"{slug}/{rel}", date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
    path.chmod(0o644)
    return path


def make_shop_cart_zip(out_dir: Path, version: str, **kwargs: object) -> Path:
    """``shop-cart-<version>.zip`` (see :func:`shop_cart_files` for the options)."""
    return make_plugin_zip(out_dir, "shop-cart", version, shop_cart_files(version, **kwargs))  # type: ignore[arg-type]


def make_theme_zip(site: Path, out_dir: Path, version: str) -> Path:
    """``twentytwentythree-<version>.zip``: the installed theme with ``version`` in its style.css."""
    theme = site / "wp-content" / "themes" / "twentytwentythree"
    path = out_dir / f"twentytwentythree-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(f for f in theme.rglob("*") if f.is_file()):
            data = file.read_bytes()
            if file.name == "style.css" and file.parent == theme:
                data = re.sub(rb"(?m)^Version: .*$", f"Version: {version}".encode(), data)
            zf.writestr(f"twentytwentythree/{file.relative_to(theme)}", data)
    return path


def theme_version(site: Path) -> str:
    """The version in the installed twentytwentythree's style.css."""
    text = (site / "wp-content" / "themes" / "twentytwentythree" / "style.css").read_text()
    return text.split("\nVersion: ", 1)[1].split("\n", 1)[0].strip()


def tree_digest(path: Path, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over every file (relative path, mode, content) and symlink under ``path``.

    ``exclude`` names top-level entries to leave out (e.g. ``.maint``).
    """
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if rel.split("/", 1)[0] in exclude:
            continue
        if p.is_symlink():
            h.update(f"L {rel} {os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"F {rel} {p.stat().st_mode & 0o7777:o} ".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
        elif p.is_dir():
            h.update(f"D {rel}\n".encode())
    return h.hexdigest()


def maintkit_tree_hash(path: Path) -> str:
    """maintkit's package tree hash (``find . -type f | sort | xargs sha256sum | sha256sum``) in Python."""
    lines = []
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            rel = "./" + p.relative_to(path).as_posix()
            lines.append((rel.encode(), f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n".encode()))
    return hashlib.sha256(b"".join(line for _, line in sorted(lines))).hexdigest()


def wp_plugin_version(site_path: Path, slug: str) -> str | None:
    """The Version header of ``wp-content/plugins/<slug>/<slug>.php`` (None when absent)."""
    main = site_path / "wp-content" / "plugins" / slug / f"{slug}.php"
    if not main.is_file():
        return None
    for line in main.read_text().splitlines():
        if "Version:" in line and "Requires" not in line:
            return line.split("Version:", 1)[1].strip()
    return None


# -- WordPress ---------------------------------------------------------------------------------

INSTALL_SCRIPT = r"""<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = 'localhost';
$_SERVER['REQUEST_URI'] = '/';
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$r = wp_install('Lab Shop', 'admin', 'admin@lab.invalid', true, '', 'lab-admin-password');
if (is_wp_error($r)) { fwrite(STDERR, $r->get_error_message()); exit(1); }
update_option('permalink_structure', '/%postname%/');
$a = activate_plugin('shop-cart/shop-cart.php');
if (is_wp_error($a)) { fwrite(STDERR, $a->get_error_message()); exit(1); }
wp_insert_post(array('post_type' => 'page', 'post_status' => 'publish', 'post_name' => 'cart',
    'post_title' => 'Cart', 'post_content' => '[shop_cart]'));
wp_insert_post(array('post_type' => 'page', 'post_status' => 'publish', 'post_name' => 'shop',
    'post_title' => 'Shop', 'post_content' => 'Blue shirt, 20 EUR'));
do_action('init');
flush_rewrite_rules(true);
echo "installed\n";
"""


def wp_config_text(*, db_name: str, db_user: str, db_password: str, db_host: str, url: str) -> str:
    """A plain wp-config.php (Debian's default one reads /etc/wordpress/config-HOST.php)."""
    salts = "\n".join(
        f"define('{k}', '{uuid.uuid4().hex}{uuid.uuid4().hex}');"
        for k in (
            "AUTH_KEY",
            "SECURE_AUTH_KEY",
            "LOGGED_IN_KEY",
            "NONCE_KEY",
            "AUTH_SALT",
            "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT",
            "NONCE_SALT",
        )
    )
    return (
        textwrap.dedent(
            f"""\
        <?php
        define('DB_NAME', '{db_name}');
        define('DB_USER', '{db_user}');
        define('DB_PASSWORD', '{db_password}');
        define('DB_HOST', '{db_host}');
        define('DB_CHARSET', 'utf8mb4');
        define('DB_COLLATE', '');
        define('WP_HOME', '{url}');
        define('WP_SITEURL', '{url}');
        define('FS_METHOD', 'direct');
        define('WP_HTTP_BLOCK_EXTERNAL', true);
        define('AUTOMATIC_UPDATER_DISABLED', true);
        define('DISABLE_WP_CRON', true);
        define('WP_DEBUG', false);
        """
        )
        + salts
        + "\n$table_prefix = 'wp_';\n"
        + "if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }\n"
        + "require_once ABSPATH . 'wp-settings.php';\n"
    )


@dataclass
class WpSite:
    """One WordPress site made from the template."""

    name: str
    path: Path
    url: str
    db_name: str
    db_user: str
    db_password: str
    handle: SiteHandle
    owner: str

    @property
    def plugin_dir(self) -> Path:
        """wp-content/plugins/shop-cart."""
        return self.path / "wp-content" / "plugins" / "shop-cart"

    def sql(self, mariadb: MariaDB, query: str) -> str:
        """Run ``query`` as root in this site's database."""
        return mariadb.sql(query, self.db_name)


@dataclass
class WpTemplate:
    """An installed WordPress tree and its database dump, to copy into sites."""

    tree: Path
    dump: bytes
    web: WebStack
    mariadb: MariaDB
    made: list[WpSite] = field(default_factory=list)

    def make_site(self, name: str | None = None, owner: str = "deploy") -> WpSite:
        """A fresh site: own directory (owned by ``owner``), database, user and nginx server block."""
        name = name or f"wp{uuid.uuid4().hex[:10]}"
        db = name.replace("-", "_")
        site_dir = self.web.make_site_dir(name)
        _run(["cp", "-a", f"{self.tree}/.", str(site_dir)])
        user, password = self.mariadb.create_database(db)
        _run([MARIADB_CLIENT, "--no-defaults", f"--socket={self.mariadb.socket}", "-uroot", db], input=self.dump)
        handle = self.web.add_site(name, str(site_dir))
        (site_dir / "wp-config.php").write_text(
            wp_config_text(
                db_name=db,
                db_user=user,
                db_password=password,
                db_host=f"127.0.0.1:{self.mariadb.port}",
                url=handle.url,
            )
        )
        chown_tree(site_dir, owner)
        site = WpSite(name, site_dir, handle.url, db, user, password, handle, owner)
        self.made.append(site)
        return site


def materialize_symlinks(tree: Path) -> None:
    """Replace symlinks (Debian links wp-includes files to /usr/share/javascript...) by copies.

    A writable site must own all its files: WordPress's upgrader writes through symlinks.
    """
    for link in [p for p in tree.rglob("*") if p.is_symlink()]:
        target = link.resolve()
        link.unlink()
        if target.is_dir():
            shutil.copytree(target, link)
        elif target.is_file():
            shutil.copy2(target, link)


def make_core_zip(tree: Path, out_dir: Path, version: str) -> Path:
    """``wordpress-<version>.zip`` built from an installed tree (core files only, new version.php)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"wordpress-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for p in sorted(tree.rglob("*")):
            rel = p.relative_to(tree).as_posix()
            top = rel.split("/", 1)[0]
            if not p.is_file() or top in ("wp-content", "wp-config.php", ".maint") or top.startswith("lab-"):
                continue
            data = p.read_bytes()
            if rel == "wp-includes/version.php":
                text = data.decode()
                start = text.index("$wp_version = '") + len("$wp_version = '")
                data = (text[:start] + version + text[text.index("'", start) :]).encode()
            zf.writestr(f"wordpress/{rel}", data)
    path.chmod(0o644)
    return path


def build_wordpress_template(
    base: Path, web: WebStack, mariadb: MariaDB, shop_cart_version: str = "1.0.0"
) -> WpTemplate:
    """Install WordPress once (with shop-cart ``shop_cart_version`` active) and dump its database."""
    tree = base / "wp-template"
    _run(["cp", "-a", str(WP_SOURCE), str(tree)])
    (tree / ".htaccess").unlink(missing_ok=True)  # Debian's points to /etc/wordpress
    materialize_symlinks(tree)
    plugin = tree / "wp-content" / "plugins" / "shop-cart"
    for rel, text in shop_cart_files(shop_cart_version).items():
        (plugin / rel).parent.mkdir(parents=True, exist_ok=True)
        (plugin / rel).write_text(text)
    db = f"wptpl_{uuid.uuid4().hex[:8]}"
    user, password = mariadb.create_database(db)
    (tree / "wp-config.php").write_text(
        wp_config_text(
            db_name=db, db_user=user, db_password=password, db_host=f"127.0.0.1:{mariadb.port}", url="http://localhost"
        )
    )
    (tree / "lab-install.php").write_text(INSTALL_SCRIPT)
    _run(["php", "lab-install.php"], cwd=tree)
    (tree / "lab-install.php").unlink()
    dump = subprocess.run(
        ["mariadb-dump", "--no-defaults", f"--socket={mariadb.socket}", "-uroot", "--single-transaction", db],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    mariadb.drop_database(db)
    return WpTemplate(tree, dump, web, mariadb)


# -- composer ----------------------------------------------------------------------------------

COMPOSER_ENV_BASE = {
    "COMPOSER_NO_INTERACTION": "1",
    "COMPOSER_DISABLE_NETWORK": "1",
    "COMPOSER_ALLOW_SUPERUSER": "1",
}


def make_composer_package(
    out_dir: Path,
    name: str,
    version: str,
    *,
    php_code: str | None = None,
    require: dict[str, str] | None = None,
) -> Path:
    """Write an artifact zip ``<vendor>-<pkg>-<version>.zip`` with composer.json at its root."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "name": name,
        "version": version,
        "type": "library",
        "autoload": {"psr-4": {_namespace(name) + "\\": "src/"}},
    }
    if require:
        meta["require"] = require
    code = php_code or f"<?php\nnamespace {_namespace(name)};\n\nclass Info\n{{\n    const VERSION = '{version}';\n}}\n"
    path = out_dir / f"{name.replace('/', '-')}-{version}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, text in (("composer.json", json.dumps(meta, indent=2)), ("src/Info.php", code)):
            info = zipfile.ZipInfo(rel, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
    path.chmod(0o644)
    return path


def _namespace(name: str) -> str:
    return "\\".join(part.replace("-", " ").title().replace(" ", "") for part in name.split("/"))


def make_composer_project(
    path: Path,
    artifacts: Path,
    require: dict[str, str],
    *,
    owner: str | None = None,
    composer_home: Path | None = None,
    initial: dict[str, str] | None = None,
) -> None:
    """A composer project at ``path`` using only the artifact repository ``artifacts``.

    ``initial`` installs these exact versions first (so updates are pending), then
    restores the wider ``require`` constraints in composer.json (``composer update --lock``).
    """
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **COMPOSER_ENV_BASE, "COMPOSER_HOME": str(composer_home or path / ".composer-home")}

    def write(req: dict[str, str]) -> None:
        doc = {
            "name": "lab/shop",
            "type": "project",
            "require": req,
            "repositories": [{"type": "artifact", "url": str(artifacts)}, {"packagist.org": False}],
            "config": {"sort-packages": True},
        }
        (path / "composer.json").write_text(json.dumps(doc, indent=4) + "\n")

    write(initial or require)
    _run(["composer", "update", "--no-progress"], cwd=path, env=env)
    if initial:
        write(require)
        _run(["composer", "update", "--lock", "--no-progress"], cwd=path, env=env)
    (path / "public").mkdir(exist_ok=True)
    (path / "public" / "index.php").write_text(
        "<?php\nrequire __DIR__ . '/../vendor/autoload.php';\n"
        "foreach (\\Composer\\InstalledVersions::getInstalledPackages() as $p) {\n"
        "    if ($p === 'lab/shop') { continue; }\n"
        "    echo $p, ' ', \\Composer\\InstalledVersions::getPrettyVersion($p), \"\\n\";\n"
        "}\n"
    )
    shutil.rmtree(path / ".composer-home", ignore_errors=True)
    if owner:
        chown_tree(path, owner)


def composer_locked_versions(path: Path) -> dict[str, str]:
    """name -> version from composer.lock."""
    lock = json.loads((path / "composer.lock").read_text())
    return {p["name"]: p["version"] for p in lock.get("packages", []) + lock.get("packages-dev", [])}
