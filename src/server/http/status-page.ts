import { createHash } from 'node:crypto';

/*
 * The status page served at `GET /` on the status port: one self-contained document (no
 * CDN, fonts or images; the status port is often on a network with no way out) that
 * renders the `/status` JSON and fetches it again every 2 seconds. It shows only what
 * /status holds, which is metadata, never key material; every value is put in the page as
 * text (textContent), so a file name or an error message cannot become markup.
 */

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #59636e; --bg: #f6f8fa; --card: #fff; --line: #d1d9e0;
  --ok: #1a7f37; --busy: #9a6700; --bad: #cf222e; --accent: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --card: #151b23; --line: #3d444d;
    --ok: #3fb950; --busy: #d29922; --bad: #f85149; --accent: #4493f8; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem; padding: .75rem 1rem; border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; display: grid; gap: 1rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .9rem 1rem; min-width: 0; }
.small, .label { color: var(--muted); font-size: .85rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .75rem; }
.big { font-size: 1.3rem; font-weight: 600; overflow-wrap: anywhere; }
.ok { color: var(--ok); } .busy { color: var(--busy); } .bad { color: var(--bad); }
.progress { margin-top: 1rem; }
progress { width: 100%; height: 1.1rem; accent-color: var(--accent); }
.row { display: flex; flex-wrap: wrap; justify-content: space-between; gap: .5rem; }
#percent { font-size: 1.2rem; font-weight: 600; }
.problem { color: var(--bad); margin: .5rem 0 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem .3rem 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num, th.num { text-align: right; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
ol { margin: 0; padding-left: 1.2rem; } li { margin-bottom: .3rem; overflow-wrap: anywhere; }
[hidden] { display: none !important; }
`;

const SCRIPT = `
'use strict';
var STATES = ['No encryption key', 'Unencrypted', 'Encryption in progress', 'Encrypted', 'Key change in progress', 'Decryption in progress', 'Master key change in progress'];
var STATE_CLASS = ['busy', 'busy', 'busy', 'ok', 'busy', 'busy', 'busy'];
var SCANS = ['No scan', 'Running', 'Suspended', 'Aborted', 'Completed'];
var SCAN_CLASS = ['', 'busy', 'busy', 'bad', 'ok'];
var REFRESH_MS = 2000;
function $(id) { return document.getElementById(id); }
function text(id, value) { $(id).textContent = value; }
function el(tag, value, cls) { var e = document.createElement(tag); if (value !== undefined) e.textContent = String(value); if (cls) e.className = cls; return e; }
function stateWord(n) { return STATES[n] || ('state ' + n); }
function bytes(n) {
  var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  var i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}
function duration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}
function setClass(id, cls) { $(id).className = 'big' + (cls ? ' ' + cls : ''); }
function rows(tbody, list) {
  tbody.replaceChildren.apply(tbody, list.map(function (cells) {
    var tr = document.createElement('tr');
    cells.forEach(function (c) { tr.appendChild(el('td', c.v, c.cls)); });
    return tr;
  }));
}
function render(r) {
  var enc = r.encryption || {};
  var lc = r.lifecycle;
  var now = Date.parse(r.time);
  text('updated', 'Updated ' + new Date(now).toLocaleTimeString() + ' (server time ' + r.time + ')');
  $('no-lifecycle').hidden = !!lc;
  if (lc) {
    text('state', stateWord(lc.encryptionState));
    setClass('state', STATE_CLASS[lc.encryptionState]);
    text('state-code', 'encryption_state ' + lc.encryptionState + ' \\u00b7 ' + lc.encryptionStateDesc);
    text('scan', SCANS[lc.scanState] || ('scan state ' + lc.scanState));
    setClass('scan', SCAN_CLASS[lc.scanState]);
    text('scan-code', 'encryption_scan_state ' + lc.scanState + ' \\u00b7 ' + lc.scanStateDesc + (lc.scanModifyDate ? ' since ' + lc.scanModifyDate : ''));
    var pct = Math.max(0, Math.min(100, Number(lc.percentComplete) || 0));
    $('bar').value = pct;
    text('percent', pct.toFixed(1) + '%');
    var eta;
    if (lc.scanState === 1) eta = lc.etaSeconds === null ? 'ETA unknown' : 'ETA ' + duration(lc.etaSeconds);
    else if (lc.scanState === 2) eta = 'suspended (ENCRYPTION RESUME continues)';
    else eta = '';
    text('eta', eta);
    text('bytes', bytes(lc.scanBytesDone) + ' of ' + bytes(lc.scanBytesTotal) + ' rewritten, ' + bytes(lc.scanBytesRemaining) + ' to go' +
      (lc.scanState === 1 ? ', ' + bytes(Math.round(lc.scanRateBytesPerSec)) + '/s' : '') +
      ' \\u00b7 limit ' + (lc.scanRateLimit > 0 ? bytes(lc.scanRateLimit) + '/s' : 'none') +
      ' \\u00b7 ' + lc.filesOffCurrentKey + ' file(s) off the current key');
    $('scan-error').hidden = !lc.scanError;
    text('scan-error', lc.scanError ? 'Scan aborted: ' + lc.scanError : '');
    text('key-alg', lc.keyAlgorithm ? lc.keyAlgorithm + ' ' + lc.keyLength + '-bit' : 'no data key');
    var hist = (lc.history || []).slice().reverse();
    var ol = $('history');
    ol.replaceChildren.apply(ol, hist.length === 0 ? [el('li', 'none yet')] : hist.map(function (h) {
      return el('li', h.at + ': ' + stateWord(h.from) + ' \\u2192 ' + stateWord(h.to) + (h.reason ? ' (' + h.reason + ')' : ''));
    }));
    var retired = lc.lastRetiredKeyIds || [];
    text('retired', retired.length ? 'Retired after the last scan: ' + retired.join(', ') : '');
  } else {
    ['state', 'scan', 'percent', 'eta', 'bytes', 'state-code', 'scan-code', 'key-alg', 'retired'].forEach(function (id) { text(id, id === 'state' || id === 'scan' ? '\\u2014' : ''); });
    $('history').replaceChildren();
  }
  text('method', enc.method || (lc && lc.method) || '\\u2014');
  var mk = enc.masterKey || {};
  var dl = $('master');
  var facts = [['Type', (lc && lc.masterKeyType) || mk.type], ['Identity', (lc && lc.masterKeyIdentity) || mk.description], ['Protects data keys', mk.protectsKeys === false ? 'no (plaintext master key)' : 'yes']];
  dl.replaceChildren();
  facts.forEach(function (f) { if (f[1] !== undefined) { dl.appendChild(el('dt', f[0])); dl.appendChild(el('dd', f[1])); } });
  var current = enc.currentDataKey ? enc.currentDataKey.id : null;
  rows($('keys').tBodies[0], (enc.dataKeys || []).slice().reverse().map(function (k) {
    return [{ v: k.id + (k.id === current ? ' (current)' : '') }, { v: k.method }, { v: duration((now - Date.parse(k.createdAt)) / 1000) },
      { v: k.files, cls: 'num' }, { v: k.exposed ? 'yes' : 'no', cls: k.exposed ? 'bad' : '' }];
  }));
  var byMethod = (enc.files && enc.files.byMethod) || {};
  var methods = Object.keys(byMethod).sort();
  rows($('files').tBodies[0], methods.map(function (m) { return [{ v: m }, { v: byMethod[m], cls: 'num' }]; })
    .concat([[{ v: 'total' }, { v: enc.files ? enc.files.total : 0, cls: 'num' }]]));
  document.title = 'tdekv: ' + (lc ? stateWord(lc.encryptionState) + ' ' + (lc.scanState === 1 ? Number(lc.percentComplete).toFixed(1) + '%' : '') : 'status');
}
function refresh() {
  fetch('status', { cache: 'no-store', headers: { accept: 'application/json' } })
    .then(function (res) { if (!res.ok) throw new Error('HTTP ' + res.status); return res.json(); })
    .then(function (r) { render(r); $('problem').hidden = true; })
    .catch(function (err) { text('problem', 'Cannot read /status (' + err.message + '); the figures below may be old. Retrying every 2 s.'); $('problem').hidden = false; })
    .then(function () { setTimeout(refresh, REFRESH_MS); });
}
refresh();
`;

const BODY = `<header><h1>tdekv encryption status</h1><span id="updated" class="small">loading\u2026</span></header>
<main>
<p id="problem" class="problem" role="alert" hidden></p>
<noscript><p>This page needs JavaScript; the same facts are in <a href="status">/status</a> (JSON).</p></noscript>
<section aria-labelledby="h-state">
<h2 id="h-state">Encryption</h2>
<div class="cards">
<div><div class="label">State</div><div id="state" class="big">\u2014</div><div id="state-code" class="small"></div></div>
<div><div class="label">Scan</div><div id="scan" class="big">\u2014</div><div id="scan-code" class="small"></div></div>
<div><div class="label">Method for new files</div><div id="method" class="big">\u2014</div><div id="key-alg" class="small"></div></div>
</div>
<div class="progress">
<progress id="bar" max="100" value="0" aria-label="scan progress"></progress>
<div class="row"><span id="percent"></span><span id="eta" class="small"></span></div>
<div id="bytes" class="small"></div>
<p id="scan-error" class="problem" hidden></p>
<p id="no-lifecycle" class="small" hidden>This server does not report the encryption lifecycle.</p>
</div>
</section>
<section aria-labelledby="h-master"><h2 id="h-master">Master key</h2><dl id="master"></dl></section>
<section aria-labelledby="h-keys"><h2 id="h-keys">Data keys</h2>
<div class="scroll"><table id="keys"><thead><tr><th>Id</th><th>Method</th><th>Age</th><th class="num">Files</th><th>Exposed</th></tr></thead><tbody></tbody></table></div>
<p id="retired" class="small"></p></section>
<section aria-labelledby="h-files"><h2 id="h-files">Files per method</h2>
<div class="scroll"><table id="files"><thead><tr><th>Method</th><th class="num">Files</th></tr></thead><tbody></tbody></table></div></section>
<section aria-labelledby="h-history"><h2 id="h-history">Last state changes</h2><ol id="history" reversed></ol></section>
</main>`;

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** The page, whole. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>tdekv status</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * Only this page's own script and style run (by hash, so no inline code an injection might
 * add), it may talk to its own origin only, and nothing may frame it.
 */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};
