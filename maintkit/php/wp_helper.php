<?php
/**
 * maintkit WordPress helper: drives WordPress's own PHP API from the command line.
 *
 * Usage (PHP CLI only):
 *   php wp_helper.php <wordpress-root> <command> [<json-arguments>]
 *   php -- <wordpress-root> <command> [<json-arguments>] < wp_helper.php   (read-only use, nothing on disk)
 *
 * Commands:
 *   list     {"readonly"}      core/db/php versions, plugins, themes, paths; with readonly, whatever
 *                              WordPress writes while booting is rolled back (plan mode), and the
 *                              answer comes when "init" starts: plugins, theme and setup hooks
 *                              loaded and run, no "init" callback (what list reports is set by then)
 *   install  {"type","zip","slug","active","network_active","into"}
 *                              install a plugin/theme zip over the installed one (Plugin_Upgrader /
 *                              Theme_Upgrader with overwrite_package) and keep its active state;
 *                              with "into" (a ".maint-new-<slug>" sibling of the installed folder)
 *                              the package is only unpacked there: the caller switches it in by
 *                              renames, then calls activate; with "packages" (a list of those,
 *                              each with "into") every one is unpacked in ONE process, in order,
 *                              up to the first that fails ("results" holds each one's answer)
 *   activate {"type","slug","active","network_active","list"}
 *                              after a switch: keep the active state, report the installed version;
 *                              with "list", also what list reports, read after the activation
 *                              (the caller's read-back, without booting WordPress once more);
 *                              with "packages" (a list of {"type","slug","active","network_active"})
 *                              every package switched in, in ONE process: "results" holds each
 *                              one's answer in order, "ok"/"error" the first that failed
 *   core     {"zip","version"} update core from a local package (Core_Upgrader)
 *   dbupgrade {"list"}         run the WordPress database upgrade with the (new) code on disk;
 *                              with "list", also what list reports afterwards
 *   flush    {"url","rewrite"} wp_cache_flush(), and flush_rewrite_rules() with rewrite (cache.clear)
 *   dbcnf    {"path"}          write a MariaDB option file (mode 0600) with the credentials of
 *                              wp-config.php; prints the database name and table prefix only
 *                              (install takes the same as "dbcnf": {"path","database","table_prefix"}:
 *                              after an install that succeeded, the file is written by that
 *                              process, only when wp-config.php names that database and prefix)
 *   siteinfo {"readonly"}      what list reports, plus the locale and the uploads folder
 *   admins   {"readonly","roles","capabilities","tfa_meta_keys","tfa_table"}
 *                              users with one of the roles or capabilities (login, email, roles,
 *                              registered, the listed capabilities they hold, 2FA when asked)
 *   replace  {"pairs","skip_columns"}
 *                              search and replace in every table of the site: PHP-serialized values
 *                              are unserialized, replaced recursively and serialized again
 *   anonymize {"rules","keep_roles"}
 *                              overwrite personal data by rules (table, column, kind), sparing
 *                              the users holding one of keep_roles
 *   staging_guards {"noindex","payments"}
 *                              blog_public=0; known payment gateways switched to test mode
 *   refresh  {"steps":[{"command","args"}]}
 *                              replace, anonymize and staging_guards in order in ONE process
 *                              (one WordPress boot for staging.refresh), the object cache flushed
 *                              after each; stops at the first that fails ("failed" names it);
 *                              "results" holds each answer by command
 *
 * Every command also takes "timed": its answer then holds "ms", the process's own wall time in
 * milliseconds (the caller ran it in one shell with other commands, and splits that shell's time).
 *
 * Output: one line "@@MAINTKIT-JSON@@{...}" on stdout (anything printed before it, such as
 * notices from plugins, is ignored by the caller). Exit 0 when the JSON was written, even if
 * it reports ok=false; the caller never trusts the exit code alone and reads state back.
 */

if (PHP_SAPI !== 'cli') {
    // Never runnable over the web, whatever the file permissions.
    if (function_exists('http_response_code')) {
        http_response_code(404);
    }
    exit(0);
}

error_reporting(E_ALL & ~E_DEPRECATED & ~E_USER_DEPRECATED & ~E_STRICT & ~E_NOTICE);
ini_set('display_errors', 'stderr');
ini_set('log_errors', '0');
@set_time_limit(0);

const MAINTKIT_MARKER = '@@MAINTKIT-JSON@@';

// STDOUT/STDERR are not defined when the script itself is read from stdin.
function maintkit_write(string $stream, string $text): void
{
    $fh = fopen('php://' . $stream, 'w');
    fwrite($fh, $text);
    fclose($fh);
}

function maintkit_out(array $data, int $code = 0): void
{
    // "timed": the process's own time, for a caller that runs it in one shell with other commands
    if (!empty($GLOBALS['maintkit_args']['timed']) && isset($_SERVER['REQUEST_TIME_FLOAT'])) {
        $data['ms'] = round((microtime(true) - $_SERVER['REQUEST_TIME_FLOAT']) * 1000, 1);
    }
    maintkit_write('stdout', "\n" . MAINTKIT_MARKER . json_encode($data, JSON_UNESCAPED_SLASHES) . "\n");
    exit($code);
}

function maintkit_fail(string $message, array $extra = array()): void
{
    maintkit_out(array_merge(array('ok' => false, 'error' => $message), $extra), 0);
}

$args = $argv;
array_shift($args); // script name, or "Standard input code"
if (count($args) > 0 && $args[0] === '--') {
    array_shift($args);
}
if (count($args) < 2) {
    maintkit_write('stderr', "usage: php wp_helper.php <wordpress-root> <command> [<json>]\n");
    exit(2);
}
$maintkit_root = rtrim($args[0], '/');
$maintkit_cmd = $args[1];
$maintkit_args = array();
if (isset($args[2]) && $args[2] !== '') {
    $decoded = json_decode($args[2], true);
    if (!is_array($decoded)) {
        maintkit_write('stderr', "arguments must be a JSON object\n");
        exit(2);
    }
    $maintkit_args = $decoded;
}
if (!is_file($maintkit_root . '/wp-load.php')) {
    maintkit_fail('no WordPress at ' . $maintkit_root . ' (wp-load.php missing)');
}

// A fatal error during bootstrap or an upgrade still produces a JSON answer.
register_shutdown_function(function () {
    $err = error_get_last();
    if ($err !== null && in_array($err['type'], array(E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR), true)) {
        $answer = array(
            'ok' => false,
            'fatal' => true,
            'error' => 'PHP fatal error: ' . $err['message'] . ' in ' . $err['file'] . ':' . $err['line'],
            'file' => $err['file'],  // where it happened: the caller names the package holding it
        );
        if (isset($GLOBALS['maintkit_step'])) {
            $answer['failed'] = $GLOBALS['maintkit_step'];  // the refresh step that was running
        }
        maintkit_write('stdout', "\n" . MAINTKIT_MARKER . json_encode($answer, JSON_UNESCAPED_SLASHES) . "\n");
    }
});

// Minimal web-like environment for a CLI bootstrap (the site's URL, when given, names the
// host: a multisite network boots the right site).
$_SERVER['HTTP_HOST'] = isset($_SERVER['HTTP_HOST']) ? $_SERVER['HTTP_HOST'] : 'localhost';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_NAME'] = 'localhost';
$maintkit_url = isset($maintkit_args['url']) && is_string($maintkit_args['url']) ? parse_url($maintkit_args['url']) : false;
if (is_array($maintkit_url) && !empty($maintkit_url['host'])) {
    $_SERVER['HTTP_HOST'] = $maintkit_url['host'] . (isset($maintkit_url['port']) ? ':' . $maintkit_url['port'] : '');
    $_SERVER['SERVER_NAME'] = $maintkit_url['host'];
    if (isset($maintkit_url['scheme']) && $maintkit_url['scheme'] === 'https') {
        $_SERVER['HTTPS'] = 'on';
    }
}
$_SERVER['REQUEST_METHOD'] = 'GET';
if (!defined('WP_USE_THEMES')) {
    define('WP_USE_THEMES', false);
}
// The shop may be in maintenance mode (.maintenance) while we update it: the helper must
// still bootstrap (WordPress reads hooks registered in $wp_filter before it loads).
$GLOBALS['wp_filter']['enable_maintenance_mode'][10][] = array(
    'function' => function () {
        return false;
    },
    'accepted_args' => 1,
);
chdir($maintkit_root);

// Read-only listing (plan mode): WordPress writes a few options while it boots (cron
// schedules, transients). Run the whole process inside one transaction that is never
// committed: the server rolls it back when the connection closes.
$maintkit_readonly = in_array($maintkit_cmd, array('list', 'siteinfo', 'admins'), true) && !empty($maintkit_args['readonly']);
if ($maintkit_readonly) {
    $GLOBALS['wp_filter']['muplugins_loaded'][-99999][] = array(
        'function' => function () {
            global $wpdb;
            $wpdb->query('SET SESSION autocommit = 0');
            $wpdb->query('START TRANSACTION');
        },
        'accepted_args' => 0,
    );
}

// The read-only list answers when "init" starts (first of its callbacks): every plugin, the
// theme and their setup hooks are loaded and have run, which is all that list reports on;
// what "init" and "wp_loaded" would do (post types, blocks, rewrite rules) is not needed.
if ($maintkit_readonly && $maintkit_cmd === 'list') {
    $GLOBALS['wp_filter']['init'][PHP_INT_MIN][] = array(
        'function' => function () {
            ob_end_clean();
            maintkit_admin_includes();
            maintkit_out(maintkit_list());
        },
        'accepted_args' => 0,
    );
}

// The compiled-code cache maint keeps for the helper (see maintkit_cache_scan below); a
// read-only run records only what it compiled itself.
if (isset($maintkit_args['php_cache']) && is_string($maintkit_args['php_cache'])) {
    maintkit_cache_open($maintkit_args['php_cache'], $maintkit_readonly);
}

if ($maintkit_cmd === 'dbcnf') {
    // Credentials only: load wp-config.php without the rest of WordPress where possible.
    maintkit_dbcnf($maintkit_root, $maintkit_args);
}

ob_start();
require_once $maintkit_root . '/wp-load.php';
ob_end_clean();
maintkit_admin_includes();

add_filter('filesystem_method', function () {
    return 'direct';
});

switch ($maintkit_cmd) {
    case 'list':
        maintkit_out(maintkit_list());
        break;
    case 'flush':
        $maintkit_flushed = wp_cache_flush();
        if (!empty($maintkit_args['rewrite'])) {
            flush_rewrite_rules(false);
        }
        maintkit_out(array('ok' => true, 'flushed' => (bool) $maintkit_flushed, 'rewrite' => !empty($maintkit_args['rewrite'])));
        break;
    case 'install':
        maintkit_out(maintkit_with_dbcnf(maintkit_install_all($maintkit_args), $maintkit_args));
        break;
    case 'activate':
        maintkit_out(maintkit_with_flush(maintkit_with_list(maintkit_activate($maintkit_args), $maintkit_args), $maintkit_args));
        break;
    case 'core':
        maintkit_out(maintkit_core($maintkit_args));
        break;
    case 'siteinfo':
        $maintkit_uploads = wp_upload_dir(null, false);
        maintkit_out(array_merge(maintkit_list(), array('locale' => get_locale(), 'uploads' => $maintkit_uploads['basedir'])));
        break;
    case 'admins':
        maintkit_out(maintkit_admins($maintkit_args));
        break;
    case 'replace':
        maintkit_out(maintkit_replace($maintkit_args));
        break;
    case 'anonymize':
        maintkit_out(maintkit_anonymize($maintkit_args));
        break;
    case 'staging_guards':
        maintkit_out(maintkit_staging_guards($maintkit_args));
        break;
    case 'refresh':
        maintkit_out(maintkit_refresh($maintkit_args));
        break;
    case 'dbupgrade':
        require_once ABSPATH . 'wp-admin/includes/upgrade.php';
        ob_start();
        wp_upgrade();
        ob_end_clean();
        wp_cache_flush();
        $v = maintkit_core_versions();
        maintkit_out(maintkit_with_flush(maintkit_with_list(array('ok' => true, 'db_version' => (string) get_option('db_version'), 'files_db_version' => $v['files_db_version']), $maintkit_args), $maintkit_args));
        break;
    default:
        maintkit_fail('unknown command ' . $maintkit_cmd);
}

/** The wp-admin files every command uses (plugins, themes, files). */
function maintkit_admin_includes(): void
{
    require_once ABSPATH . 'wp-admin/includes/plugin.php';
    require_once ABSPATH . 'wp-admin/includes/theme.php';
    require_once ABSPATH . 'wp-admin/includes/file.php';
    require_once ABSPATH . 'wp-admin/includes/misc.php';
}

/**
 * OPcache's file cache (opcache.file_cache_only, started by maint with the directory it made)
 * trusts a compiled file while the source's mtime is unchanged. maint trusts it less: a
 * manifest next to the cache records, per source, the device, inode, size, mtime and ctime it
 * had when its compiled copy was kept, and a compiled copy whose source differs in any of them
 * (or has no entry) is deleted before WordPress loads. A package switched in by renames, a file
 * rewritten with its old mtime or a release swapped in by a directory rename all change the
 * inode or the ctime, which no program can set back.
 */
function maintkit_cache_open(string $dir, bool $readonly): void
{
    if ($dir === '' || $dir[0] !== '/' || ini_get('opcache.file_cache') !== $dir || !ini_get('opcache.enable_cli')
        || !ini_get('opcache.file_cache_only') || !is_dir($dir) || is_link($dir)) {
        return; // not the cache maint started this process with: never touched
    }
    $stored = maintkit_cache_manifest($dir);
    $manifest = maintkit_cache_scan($dir, $stored, false);
    register_shutdown_function(function () use ($dir, $manifest, $stored, $readonly) {
        if (!$readonly) {
            maintkit_cache_write($dir, maintkit_cache_scan($dir, $manifest, true));
            return;
        }
        $kept = maintkit_cache_record($dir, $manifest);
        if (!maintkit_same_entries($kept, $stored)) {
            maintkit_cache_write($dir, $kept);
        }
    });
}

/**
 * A read-only run's record, without a second scan: it changed no source, so the entries the
 * opening scan kept are still true (a source changed meanwhile by someone else is caught by the
 * next run's opening scan); only the compiled files of the sources it included that have no
 * entry can be new. Each is kept under the same rule as the scan's (its source's ctime older
 * than the compiled file), or deleted.
 */
function maintkit_cache_record(string $dir, array $manifest): array
{
    $ids = array();
    foreach ((array) @scandir($dir) as $name) {
        $sub = $dir . '/' . $name;
        if (is_string($name) && strlen($name) === 32 && !is_link($sub) && is_dir($sub)) {
            $ids[] = $name; // <dir>/<32-character system id><source path>.bin
        }
    }
    foreach (get_included_files() as $src) {
        if (isset($manifest[$src])) {
            continue;
        }
        foreach ($ids as $sysid) {
            $bin = $dir . '/' . $sysid . $src . '.bin';
            clearstatcache(true, $bin);
            $st = @lstat($bin);
            if ($st === false || ($st['mode'] & 0170000) !== 0100000) {
                continue;
            }
            $id = maintkit_cache_id($src);
            if ($id !== null && $id[1] < $st['mtime']) {
                $manifest[$src] = $id[0];
            } else {
                @unlink($bin);
            }
        }
    }
    return $manifest;
}

function maintkit_same_entries(array $a, array $b): bool
{
    if (count($a) !== count($b)) {
        return false;
    }
    foreach ($a as $k => $v) {
        if (!array_key_exists($k, $b) || $b[$k] !== $v) {
            return false;
        }
    }
    return true;
}

function maintkit_cache_manifest(string $dir): array
{
    $text = @file_get_contents($dir . '/manifest.json');
    $data = $text === false ? null : json_decode($text, true);
    return is_array($data) ? $data : array();
}

/** The source's identity: device, inode, size, mtime, ctime (null when it is gone). */
function maintkit_cache_id(string $src): ?array
{
    clearstatcache(true, $src);
    $st = @lstat($src);
    if ($st === false || ($st['mode'] & 0170000) !== 0100000) {
        return null; // gone, or no longer a regular file
    }
    return array($st['dev'] . ':' . $st['ino'] . ':' . $st['size'] . ':' . $st['mtime'] . ':' . $st['ctime'], $st['ctime']);
}

/**
 * Keep the compiled files whose source is unchanged since the manifest recorded it; delete the
 * rest. With $record (after the run) a compiled file without an entry is recorded when its
 * source's ctime is older than the compiled file (so it was compiled from that content).
 */
function maintkit_cache_scan(string $dir, array $manifest, bool $record): array
{
    $keep = array();
    $it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($dir, FilesystemIterator::SKIP_DOTS));
    foreach ($it as $path => $info) {
        if ($info->isLink() || !$info->isFile() || substr($path, -4) !== '.bin') {
            continue;
        }
        $src = substr($path, strlen($dir) + 33, -4); // <dir>/<32-character system id><source path>.bin
        $id = maintkit_cache_id($src);
        if ($id !== null && isset($manifest[$src]) && $manifest[$src] === $id[0]) {
            $keep[$src] = $id[0];
        } elseif ($record && $id !== null && !isset($manifest[$src]) && $id[1] < $info->getMTime()) {
            $keep[$src] = $id[0];
        } else {
            @unlink($path);
        }
    }
    return $keep;
}

function maintkit_cache_write(string $dir, array $manifest): void
{
    $tmp = $dir . '/manifest.json.tmp' . getmypid();
    $old = umask(077);
    if (@file_put_contents($tmp, json_encode($manifest, JSON_UNESCAPED_SLASHES)) === false || !@rename($tmp, $dir . '/manifest.json')) {
        @unlink($tmp);
    }
    umask($old);
}

/** With "list" in the arguments: the answer plus what list reports now, under "state". */
function maintkit_with_list(array $out, array $a): array
{
    if (!empty($a['list']) && !empty($out['ok'])) {
        $out['state'] = maintkit_list();
    }
    return $out;
}

/**
 * With "flush" in the arguments and the answer ok: the object cache and the rewrite rules (soft,
 * .htaccess untouched) flushed as the last thing this process does, after every change it made
 * and after the report above (the same calls as the "flush" command).
 */
function maintkit_with_flush(array $out, array $a): array
{
    if (!empty($a['flush']) && !empty($out['ok'])) {
        $cache = wp_cache_flush();
        flush_rewrite_rules(false);
        $out['flushed'] = array('cache' => (bool) $cache, 'rewrite' => true);
    }
    return $out;
}

function maintkit_core_versions(): array
{
    $wp_version = $wp_db_version = $required_php_version = $required_mysql_version = null;
    include ABSPATH . WPINC . '/version.php';
    return array(
        'version' => $wp_version,
        'files_db_version' => (string) $wp_db_version,
        'requires_php' => $required_php_version,
    );
}

function maintkit_list(): array
{
    global $table_prefix, $wpdb;
    if (function_exists('wp_clean_plugins_cache')) {
        wp_clean_plugins_cache(false);
    }
    $plugins = array();
    foreach (get_plugins() as $file => $data) {
        $slug = strpos($file, '/') !== false ? dirname($file) : preg_replace('/\.php$/', '', $file);
        $plugins[] = array(
            'slug' => $slug,
            'file' => $file,
            'name' => $data['Name'],
            'version' => $data['Version'],
            'requires_wp' => isset($data['RequiresWP']) ? $data['RequiresWP'] : '',
            'requires_php' => isset($data['RequiresPHP']) ? $data['RequiresPHP'] : '',
            'update_uri' => isset($data['UpdateURI']) ? $data['UpdateURI'] : '',
            'active' => is_plugin_active($file),
            'network_active' => is_multisite() && is_plugin_active_for_network($file),
            'path' => WP_PLUGIN_DIR . '/' . (strpos($file, '/') !== false ? dirname($file) : $file),
        );
    }
    $themes = array();
    $stylesheet = get_stylesheet();
    $template = get_template();
    foreach (wp_get_themes(array('errors' => null)) as $slug => $theme) {
        $themes[] = array(
            'slug' => $slug,
            'name' => $theme->get('Name'),
            'version' => $theme->get('Version'),
            'requires_wp' => (string) $theme->get('RequiresWP'),
            'requires_php' => (string) $theme->get('RequiresPHP'),
            'update_uri' => (string) $theme->get('UpdateURI'),
            'active' => ($slug === $stylesheet || $slug === $template),
            'path' => $theme->get_stylesheet_directory(),
        );
    }
    $core = maintkit_core_versions();
    return array(
        'ok' => true,
        'core' => array(
            'version' => $core['version'],
            'files_db_version' => $core['files_db_version'],
            'db_version' => (string) get_option('db_version'),
            'requires_php' => $core['requires_php'],
            'multisite' => is_multisite(),
        ),
        'php' => array(
            'version' => PHP_VERSION,
            'extensions' => array_map('strtolower', get_loaded_extensions()),
        ),
        'paths' => array(
            'abspath' => rtrim(ABSPATH, '/'),
            'content' => WP_CONTENT_DIR,
            'plugins' => WP_PLUGIN_DIR,
            'themes' => get_theme_root(),
        ),
        'table_prefix' => $table_prefix,
        'db_name' => defined('DB_NAME') ? DB_NAME : '',
        'plugins' => $plugins,
        'themes' => $themes,
    );
}

function maintkit_tfa_ids(string $table): ?array
{
    global $wpdb;
    if ($table === '') {
        return null;
    }
    $name = $wpdb->base_prefix . preg_replace('/[^A-Za-z0-9_]/', '', $table);
    if ($wpdb->get_var($wpdb->prepare('SHOW TABLES LIKE %s', $wpdb->esc_like($name))) !== $name) {
        return array();
    }
    return array_map('intval', $wpdb->get_col('SELECT DISTINCT user_id FROM `' . $name . '`'));
}

function maintkit_admins(array $a): array
{
    $roles = isset($a['roles']) && is_array($a['roles']) ? $a['roles'] : array('administrator');
    $caps = isset($a['capabilities']) && is_array($a['capabilities']) ? $a['capabilities'] : array();
    $keys = isset($a['tfa_meta_keys']) && is_array($a['tfa_meta_keys']) ? $a['tfa_meta_keys'] : array();
    $tfa_ids = maintkit_tfa_ids(isset($a['tfa_table']) ? (string) $a['tfa_table'] : '');
    $queries = array(array('role__in' => $roles));
    if ($caps && version_compare(get_bloginfo('version'), '5.9', '>=')) {
        $queries[] = array('capability__in' => $caps);
    }
    $users = array();
    foreach ($queries as $q) {
        foreach (get_users(array_merge($q, array('number' => -1))) as $u) {
            $users[$u->ID] = $u;
        }
    }
    if (is_multisite()) {
        foreach (get_super_admins() as $login) {
            $u = get_user_by('login', $login);
            if ($u) {
                $users[$u->ID] = $u;
            }
        }
    }
    ksort($users);
    $out = array();
    foreach ($users as $u) {
        $tfa = null;
        if ($keys || $tfa_ids !== null) {
            $tfa = $tfa_ids !== null && in_array((int) $u->ID, $tfa_ids, true);
            foreach ($keys as $k) {
                $v = get_user_meta($u->ID, (string) $k, true);
                $tfa = $tfa || !empty($v);
            }
        }
        $out[] = array(
            'id' => (int) $u->ID,
            'login' => $u->user_login,
            'email' => $u->user_email,
            'roles' => array_values((array) $u->roles),
            'caps' => array_values(array_filter($caps, function ($c) use ($u) {
                return user_can($u, $c);
            })),
            'registered' => $u->user_registered,
            'super_admin' => is_multisite() && is_super_admin($u->ID),
            'two_factor' => $tfa,
        );
    }
    return array('ok' => true, 'admins' => $out);
}

function maintkit_find_plugin_file(string $slug): ?string
{
    wp_clean_plugins_cache(false);
    foreach (array_keys(get_plugins()) as $file) {
        $s = strpos($file, '/') !== false ? dirname($file) : preg_replace('/\.php$/', '', $file);
        if ($s === $slug) {
            return $file;
        }
    }
    return null;
}

function maintkit_messages($skin): array
{
    $out = array();
    if (is_object($skin) && method_exists($skin, 'get_upgrade_messages')) {
        foreach ($skin->get_upgrade_messages() as $m) {
            $out[] = is_string($m) ? wp_strip_all_tags($m) : json_encode($m);
        }
    }
    return array_slice($out, -20);
}

function maintkit_result_error($result, $skin): ?string
{
    if (is_wp_error($result)) {
        return $result->get_error_message() . ' (' . $result->get_error_code() . ')';
    }
    if ($result === false || $result === null) {
        $errors = is_object($skin) && isset($skin->result) && is_wp_error($skin->result) ? $skin->result : null;
        if ($errors) {
            return $errors->get_error_message();
        }
        return 'the upgrader returned ' . var_export($result, true);
    }
    if (is_object($skin) && isset($skin->result) && is_wp_error($skin->result)) {
        return $skin->result->get_error_message();
    }
    return null;
}

/**
 * Every package of "packages" unpacked beside its installed folder, in order, up to the first
 * that fails (each only with "into": nothing in place); else the one the arguments name.
 */
function maintkit_install_all(array $a): array
{
    if (!isset($a['packages']) || !is_array($a['packages'])) {
        return maintkit_install($a);
    }
    $out = array('ok' => true, 'error' => null, 'results' => array());
    foreach ($a['packages'] as $p) {
        if (!is_array($p) || empty($p['into'])) {
            $r = array('ok' => false, 'error' => 'a package of a batch must be unpacked beside its folder ("into")');
        } else {
            $r = maintkit_install($p);
        }
        $out['results'][] = $r;
        if (empty($r['ok'])) {
            $out['ok'] = false;
            $out['error'] = $r['error'];
            break;
        }
    }
    return $out;
}

function maintkit_install(array $a): array
{
    require_once ABSPATH . 'wp-admin/includes/class-wp-upgrader.php';
    $type = isset($a['type']) ? $a['type'] : 'plugin';
    $zip = isset($a['zip']) ? $a['zip'] : '';
    $slug = isset($a['slug']) ? $a['slug'] : '';
    if ($zip === '' || !is_file($zip)) {
        return array('ok' => false, 'error' => 'package not found: ' . $zip);
    }
    $skin = new Automatic_Upgrader_Skin();
    if (isset($a['into']) && $a['into'] !== '') {
        return maintkit_install_into($type, $zip, (string) $a['into'], $skin);
    }
    ob_start();
    if ($type === 'theme') {
        $upgrader = new Theme_Upgrader($skin);
        $result = $upgrader->install($zip, array('overwrite_package' => true));
    } else {
        $upgrader = new Plugin_Upgrader($skin);
        $result = $upgrader->install($zip, array('overwrite_package' => true));
    }
    ob_end_clean();
    $error = maintkit_result_error($result, $skin);
    $out = array('ok' => $error === null, 'error' => $error, 'messages' => maintkit_messages($skin));
    return maintkit_installed($a, $out);
}

/**
 * Unpack a package into a sibling of the installed folder (".maint-new-<slug>" next to it, in
 * the plugins or themes root) with the upgrader's own checks and hooks; nothing live changes.
 */
function maintkit_install_into(string $type, string $zip, string $into, $skin): array
{
    $parent = realpath($type === 'theme' ? get_theme_root() : WP_PLUGIN_DIR);
    if ($parent === false || realpath(dirname($into)) !== $parent || strpos(basename($into), '.maint-new-') !== 0) {
        return array('ok' => false, 'error' => 'refusing to unpack outside the ' . $type . 's folder: ' . $into);
    }
    $upgrader = $type === 'theme' ? new Theme_Upgrader($skin) : new Plugin_Upgrader($skin);
    $upgrader->init();
    $upgrader->install_strings();
    add_filter('upgrader_source_selection', array($upgrader, 'check_package'));
    ob_start();
    $result = $upgrader->run(array(
        'package' => $zip,
        'destination' => $into,
        'clear_destination' => true,
        'abort_if_destination_exists' => false,
        'clear_working' => true,
        'hook_extra' => array('type' => $type, 'action' => 'install'),
    ));
    ob_end_clean();
    remove_filter('upgrader_source_selection', array($upgrader, 'check_package'));
    $error = maintkit_result_error($result, $skin);
    if ($error === null && !is_dir($into)) {
        $error = 'the upgrader left nothing in ' . $into;
    }
    return array('ok' => $error === null, 'error' => $error, 'messages' => maintkit_messages($skin), 'staged' => $into);
}

/**
 * After the switch: every package of "packages" (else the one the arguments name) keeps its
 * active state and reports its installed version; each is done whatever the one before it
 * answered, and the first that failed gives "ok" and "error".
 */
function maintkit_activate(array $a): array
{
    if (!isset($a['packages']) || !is_array($a['packages'])) {
        return maintkit_installed($a, array('ok' => true, 'error' => null));
    }
    $out = array('ok' => true, 'error' => null, 'results' => array());
    foreach ($a['packages'] as $p) {
        $r = maintkit_installed(is_array($p) ? $p : array(), array('ok' => true, 'error' => null));
        $out['results'][] = $r;
        if (empty($r['ok']) && $out['ok']) {
            $out['ok'] = false;
            $out['error'] = $r['error'];
        }
    }
    return $out;
}

/** The installed package's version (and, for a plugin, its active state, restored when asked). */
function maintkit_installed(array $a, array $out): array
{
    $type = isset($a['type']) ? $a['type'] : 'plugin';
    $slug = isset($a['slug']) ? $a['slug'] : '';
    if ($type === 'plugin') {
        $file = maintkit_find_plugin_file($slug);
        $out['file'] = $file;
        if ($file !== null) {
            $data = get_plugin_data(WP_PLUGIN_DIR . '/' . $file, false, false);
            $out['version'] = $data['Version'];
            $network = !empty($a['network_active']);
            if (!empty($a['active']) && !is_plugin_active($file)) {
                $act = activate_plugin($file, '', $network, true);
                if (is_wp_error($act)) {
                    $out['ok'] = false;
                    $out['error'] = 'reactivation failed: ' . $act->get_error_message();
                }
            }
            $out['active'] = is_plugin_active($file);
        }
    } else {
        wp_clean_themes_cache(false);
        $theme = wp_get_theme($slug);
        $out['version'] = $theme->exists() ? $theme->get('Version') : null;
    }
    return $out;
}

function maintkit_core(array $a): array
{
    require_once ABSPATH . 'wp-admin/includes/class-wp-upgrader.php';
    require_once ABSPATH . 'wp-admin/includes/update.php';
    $zip = isset($a['zip']) ? $a['zip'] : '';
    $version = isset($a['version']) ? $a['version'] : '';
    if ($zip === '' || !is_file($zip) || $version === '') {
        return array('ok' => false, 'error' => 'core package not found: ' . $zip);
    }
    $offer = (object) array(
        'response' => 'upgrade',
        'download' => $zip,
        'locale' => get_locale(),
        'packages' => (object) array(
            'full' => $zip,
            'no_content' => '',
            'new_bundled' => '',
            'partial' => false,
            'rollback' => false,
        ),
        'current' => $version,
        'version' => $version,
        'php_version' => isset($a['requires_php']) ? $a['requires_php'] : '5.6.20',
        'mysql_version' => '5.0',
        'new_bundled' => '',
        'partial_version' => '',
    );
    $skin = new Automatic_Upgrader_Skin();
    $upgrader = new Core_Upgrader($skin);
    ob_start();
    $result = $upgrader->upgrade($offer, array('pre_check_md5' => false, 'attempt_rollback' => false, 'do_rollback' => false));
    ob_end_clean();
    $error = maintkit_result_error($result, $skin);
    $out = array('ok' => $error === null, 'error' => $error, 'messages' => maintkit_messages($skin));
    if ($error === null) {
        // The database upgrade needs the new code: run it in a fresh PHP process.
        $out['needs_db_upgrade'] = true;
    }
    return $out;
}

function maintkit_dbcnf(string $root, array $a): void
{
    $path = isset($a['path']) ? $a['path'] : '';
    if ($path === '') {
        maintkit_fail('dbcnf needs a path');
    }
    // SHORTINIT: wp-config.php and the database layer only, no plugins or themes.
    define('SHORTINIT', true);
    ob_start();
    require_once $root . '/wp-load.php';
    ob_end_clean();
    $out = maintkit_dbcnf_write($path, null, null);
    if (!$out['ok']) {
        maintkit_fail($out['error']);
    }
    maintkit_out($out);
}

/**
 * With "dbcnf" ({"path","database","table_prefix"}) in install's arguments and the install ok:
 * the option file written by this process (WordPress booted: wp-config.php was read), so the
 * caller's dump needs no PHP start of its own. Written only when wp-config.php names the
 * database and table prefix given (the state the caller planned with); the answer says what
 * it names either way.
 */
function maintkit_with_dbcnf(array $out, array $a): array
{
    if (!empty($out['ok']) && isset($a['dbcnf']) && is_array($a['dbcnf'])) {
        $c = $a['dbcnf'];
        $path = isset($c['path']) && is_string($c['path']) ? $c['path'] : '';
        $db = isset($c['database']) && is_string($c['database']) ? $c['database'] : null;
        $prefix = isset($c['table_prefix']) && is_string($c['table_prefix']) ? $c['table_prefix'] : null;
        $out['dbcnf'] = $path === '' ? array('ok' => false, 'error' => 'dbcnf needs a path') : maintkit_dbcnf_write($path, $db, $prefix);
    }
    return $out;
}

/**
 * The MariaDB option file (mode 0600, atomically) with wp-config.php's credentials; the answer
 * names the database and table prefix only. With $database/$prefix given, nothing is written
 * unless wp-config.php names exactly those ("mismatch" in the answer).
 */
function maintkit_dbcnf_write(string $path, ?string $database, ?string $prefix): array
{
    global $table_prefix;
    foreach (array('DB_NAME', 'DB_USER', 'DB_PASSWORD', 'DB_HOST') as $c) {
        if (!defined($c)) {
            return array('ok' => false, 'error' => 'wp-config.php does not define ' . $c);
        }
    }
    $named = array('database' => DB_NAME, 'table_prefix' => $table_prefix);
    if (($database !== null && $database !== DB_NAME) || ($prefix !== null && $prefix !== $table_prefix)) {
        return array_merge(array('ok' => true, 'mismatch' => true), $named);
    }
    $old = umask(077);
    $tmp = $path . '.tmp' . getmypid();
    if (file_put_contents($tmp, maintkit_dbcnf_text()) === false || !chmod($tmp, 0600) || !rename($tmp, $path)) {
        @unlink($tmp);
        umask($old);
        return array('ok' => false, 'error' => 'cannot write ' . $path);
    }
    umask($old);
    return array_merge(array('ok' => true), $named);
}

/** The option file's text: the [client] group with wp-config.php's user, password, host or socket. */
function maintkit_dbcnf_text(): string
{
    $host = DB_HOST;
    $lines = array('[client]', 'user="' . addcslashes(DB_USER, "\\\"") . '"', 'password="' . addcslashes(DB_PASSWORD, "\\\"") . '"');
    $port = null;
    $socket = null;
    if (strpos($host, ':') !== false) {
        list($h, $rest) = explode(':', $host, 2);
        if (ctype_digit($rest)) {
            $port = $rest;
        } else {
            $socket = $rest;
        }
        $host = $h;
    }
    if ($host === '' || $host === 'localhost') {
        $host = $socket !== null ? 'localhost' : ($port !== null ? '127.0.0.1' : 'localhost');
    }
    $lines[] = 'host="' . addcslashes($host, "\\\"") . '"';
    if ($port !== null) {
        $lines[] = 'port=' . $port;
    }
    if ($socket !== null) {
        $lines[] = 'socket="' . addcslashes($socket, "\\\"") . '"';
    }
    if (defined('DB_CHARSET') && DB_CHARSET !== '') {
        $lines[] = 'default-character-set=' . preg_replace('/[^A-Za-z0-9_]/', '', DB_CHARSET);
    }
    return implode("\n", $lines) . "\n";
}

// ---- staging.refresh: serialized-safe search and replace, anonymisation, staging guards ----

function maintkit_table_keys(string $table): array
{
    global $wpdb;
    $pk = array();
    $text = array();
    foreach ($wpdb->get_results('SHOW COLUMNS FROM `' . $table . '`', ARRAY_A) as $col) {
        if ($col['Key'] === 'PRI') {
            $pk[] = $col['Field'];
        }
        if (preg_match('/(char|text|blob|enum|set)/i', $col['Type']) && !preg_match('/^(enum|set)/i', $col['Type'])) {
            $text[] = $col['Field'];
        }
    }
    return array($pk, $text);
}

function maintkit_site_tables(): array
{
    global $wpdb;
    $like = $wpdb->esc_like($wpdb->base_prefix) . '%';
    return $wpdb->get_col($wpdb->prepare('SHOW TABLES LIKE %s', $like));
}

// Replace inside a value; serialized strings are unserialized (no objects), replaced, reserialized.
function maintkit_replace_value($value, array $pairs, array &$stats)
{
    if (is_string($value)) {
        if (is_serialized($value, false)) {
            $inner = @unserialize($value, array('allowed_classes' => false));
            if ($inner !== false || $value === 'b:0;') {
                $new = maintkit_replace_value($inner, $pairs, $stats);
                return $new === $inner ? $value : serialize($new);
            }
        }
        $out = $value;
        foreach ($pairs as $pair) {
            $out = str_replace((string) $pair[0], (string) $pair[1], $out);
        }
        return $out;
    }
    if (is_array($value)) {
        $out = array();
        foreach ($value as $k => $v) {
            $out[$k] = maintkit_replace_value($v, $pairs, $stats);
        }
        return $out;
    }
    if (is_object($value)) {
        $stats['objects_skipped']++;  // incomplete classes cannot be changed: left as they are
    }
    return $value;
}

function maintkit_replace_column(string $table, array $pk, string $col, array $pairs, array &$stats): int
{
    global $wpdb;
    $likes = array();
    foreach ($pairs as $pair) {
        $likes[] = $wpdb->prepare('`' . $col . '` LIKE %s', '%' . $wpdb->esc_like((string) $pair[0]) . '%');
    }
    $keys = implode(', ', array_map(function ($k) {
        return '`' . $k . '`';
    }, $pk));
    $rows = $wpdb->get_results('SELECT ' . $keys . ', `' . $col . '` AS maintkit_value FROM `' . $table . '` WHERE ' . implode(' OR ', $likes), ARRAY_A);
    $changed = 0;
    foreach ($rows as $row) {
        $new = maintkit_replace_value($row['maintkit_value'], $pairs, $stats);
        if ($new === $row['maintkit_value']) {
            continue;
        }
        $where = array();
        foreach ($pk as $k) {
            $where[$k] = $row[$k];
        }
        if ($wpdb->update($table, array($col => $new), $where) === false) {
            throw new RuntimeException('update of ' . $table . '.' . $col . ' failed: ' . $wpdb->last_error);
        }
        $changed++;
    }
    return $changed;
}

function maintkit_replace(array $a): array
{
    $pairs = isset($a['pairs']) && is_array($a['pairs']) ? $a['pairs'] : array();
    $skip = isset($a['skip_columns']) && is_array($a['skip_columns']) ? $a['skip_columns'] : array('guid');
    $stats = array('objects_skipped' => 0);
    $tables = array();
    $no_key = array();
    try {
        foreach (maintkit_site_tables() as $table) {
            list($pk, $text) = maintkit_table_keys($table);
            if (!$pk) {
                $no_key[] = $table;
                continue;
            }
            $n = 0;
            foreach ($text as $col) {
                if (!in_array($col, $skip, true) && !in_array($col, $pk, true)) {
                    $n += maintkit_replace_column($table, $pk, $col, $pairs, $stats);
                }
            }
            if ($n > 0) {
                $tables[$table] = $n;
            }
        }
    } catch (RuntimeException $e) {
        return array('ok' => false, 'error' => $e->getMessage());
    }
    wp_cache_flush();
    return array('ok' => true, 'rows' => $tables, 'no_primary_key' => $no_key, 'objects_skipped' => $stats['objects_skipped']);
}

function maintkit_anon_value(string $kind, string $id)
{
    switch ($kind) {
        case 'email':
            return 'user' . $id . '@example.invalid';
        case 'login':
            return 'user' . $id;
        case 'name':
            return 'Customer ' . $id;
        case 'phone':
            return '+00 000 ' . str_pad($id, 6, '0', STR_PAD_LEFT);
        case 'address':
            return $id . ' Example Street';
        case 'empty':
            return '';
        default:
            return 'redacted';
    }
}

function maintkit_anon_rule(array $rule, array $keep_users): array
{
    global $wpdb;
    $table = $wpdb->base_prefix . preg_replace('/[^A-Za-z0-9_]/', '', (string) $rule['table']);
    if ($wpdb->get_var($wpdb->prepare('SHOW TABLES LIKE %s', $wpdb->esc_like($table))) !== $table) {
        return array('table' => $table, 'missing' => true, 'rows' => 0);
    }
    $ident = function ($name) {
        return '`' . preg_replace('/[^A-Za-z0-9_]/', '', (string) $name) . '`';
    };
    list($pk) = maintkit_table_keys($table);
    if (count($pk) !== 1) {
        return array('table' => $table, 'error' => 'needs a one-column primary key', 'rows' => 0);
    }
    $id_col = !empty($rule['id_column']) ? (string) $rule['id_column'] : $pk[0];
    $user_col = !empty($rule['user_column']) ? (string) $rule['user_column'] : '';
    $sql = 'SELECT ' . $ident($pk[0]) . ' AS k, ' . $ident($id_col) . ' AS i' . ($user_col !== '' ? ', ' . $ident($user_col) . ' AS u' : '') . ' FROM `' . $table . '`';
    if (!empty($rule['keys']) && is_array($rule['keys'])) {
        $in = implode(', ', array_map(function ($k) use ($wpdb) {
            return $wpdb->prepare('%s', (string) $k);
        }, $rule['keys']));
        $sql .= ' WHERE ' . $ident(!empty($rule['key_column']) ? $rule['key_column'] : 'meta_key') . ' IN (' . $in . ')';
    }
    $n = 0;
    foreach ($wpdb->get_results($sql, ARRAY_A) as $row) {
        if ($user_col !== '' && in_array((int) $row['u'], $keep_users, true)) {
            continue;
        }
        $value = maintkit_anon_value((string) $rule['kind'], (string) $row['i']);
        if ($wpdb->update($table, array(preg_replace('/[^A-Za-z0-9_]/', '', (string) $rule['column']) => $value), array($pk[0] => $row['k'])) === false) {
            return array('table' => $table, 'error' => $wpdb->last_error, 'rows' => $n);
        }
        $n++;
    }
    return array('table' => $table, 'column' => (string) $rule['column'], 'rows' => $n);
}

function maintkit_anonymize(array $a): array
{
    $rules = isset($a['rules']) && is_array($a['rules']) ? $a['rules'] : array();
    $roles = isset($a['keep_roles']) && is_array($a['keep_roles']) ? $a['keep_roles'] : array('administrator');
    $keep = $roles ? array_map('intval', get_users(array('role__in' => $roles, 'fields' => 'ID', 'number' => -1))) : array();
    $out = array();
    $ok = true;
    foreach ($rules as $rule) {
        $res = maintkit_anon_rule((array) $rule, $keep);
        $ok = $ok && !isset($res['error']);
        $out[] = $res;
    }
    wp_cache_flush();
    return array('ok' => $ok, 'error' => $ok ? null : 'an anonymisation rule failed', 'rules' => $out, 'kept_users' => $keep);
}

function maintkit_staging_guards(array $a): array
{
    $out = array('ok' => true, 'blog_public' => (string) get_option('blog_public'), 'test_mode' => array(), 'not_handled' => array());
    if (!empty($a['noindex'])) {
        update_option('blog_public', '0');
        $out['blog_public'] = (string) get_option('blog_public');
    }
    if (!empty($a['payments'])) {
        $flags = isset($a['gateways']) && is_array($a['gateways']) ? $a['gateways'] : array();
        foreach ($flags as $gateway => $flag) {
            $name = 'woocommerce_' . $gateway . '_settings';
            $settings = get_option($name, null);
            if (!is_array($settings)) {
                continue;
            }
            $settings[(string) $flag] = 'yes';
            update_option($name, $settings);
            $out['test_mode'][] = $gateway;
        }
        global $wpdb;
        $like = $wpdb->esc_like('woocommerce_') . '%' . $wpdb->esc_like('_settings');
        foreach ($wpdb->get_col($wpdb->prepare("SELECT option_name FROM {$wpdb->options} WHERE option_name LIKE %s", $like)) as $name) {
            $gateway = substr($name, strlen('woocommerce_'), -strlen('_settings'));
            $settings = get_option($name);
            if (!isset($flags[$gateway]) && is_array($settings) && isset($settings['enabled']) && $settings['enabled'] === 'yes') {
                $out['not_handled'][] = $gateway;
            }
        }
    }
    return $out;
}

/**
 * staging.refresh's WordPress steps in one process: each of replace, anonymize and
 * staging_guards in the order given, the object cache flushed after each (the next one reads
 * options afresh from the database, never a value cached before the previous one wrote).
 */
function maintkit_refresh(array $a): array
{
    $known = array(
        'replace' => 'maintkit_replace',
        'anonymize' => 'maintkit_anonymize',
        'staging_guards' => 'maintkit_staging_guards',
    );
    $steps = isset($a['steps']) && is_array($a['steps']) ? $a['steps'] : array();
    $results = array();
    foreach ($steps as $step) {
        $cmd = is_array($step) && isset($step['command']) ? (string) $step['command'] : '';
        if (!isset($known[$cmd])) {
            return array('ok' => false, 'error' => 'unknown refresh step ' . $cmd, 'failed' => $cmd, 'results' => (object) $results);
        }
        $GLOBALS['maintkit_step'] = $cmd;
        $res = call_user_func($known[$cmd], isset($step['args']) && is_array($step['args']) ? $step['args'] : array());
        wp_cache_flush();
        $results[$cmd] = $res;
        if (empty($res['ok'])) {
            $error = isset($res['error']) ? $res['error'] : null;
            return array('ok' => false, 'error' => $error, 'failed' => $cmd, 'results' => (object) $results);
        }
    }
    unset($GLOBALS['maintkit_step']);
    return array('ok' => true, 'error' => null, 'failed' => null, 'results' => (object) $results);
}
