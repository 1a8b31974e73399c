/**
 * The console's stylesheet and script, as strings compiled into `dist/` (the package ships no other
 * files), served from the console's own origin as the Content-Security-Policy requires.
 */
export const STYLESHEET = `
:root { --fg: #1d232b; --muted: #5d6773; --line: #dde2e8; --bg: #f6f7f9; --card: #fff;
  --accent: #2457c5; --bad: #b42318; --warn: #a15c00; --good: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #17202c; color: #fff; }
header .brand { font-weight: 600; letter-spacing: .02em; }
header nav a { color: #c9d4e3; text-decoration: none; margin-right: 16px; }
header nav a.here, header nav a:hover { color: #fff; }
header form { margin-left: auto; }
main { padding: 20px 24px 40px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 14px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 140px; }
.card .n { font-size: 22px; font-weight: 600; }
.card .l { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); border-radius: 6px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:last-child td { border-bottom: 0; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px; overflow: auto; max-height: 480px; white-space: pre-wrap; word-break: break-all; }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; border: 1px solid currentColor; }
.ok { color: var(--good); } .bad { color: var(--bad); } .warn { color: var(--warn); }
form.filter { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; margin-bottom: 12px; }
label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
input[type=text], input[type=password], select { font: inherit; padding: 5px 8px; border: 1px solid #c5ccd5; border-radius: 4px; min-width: 160px; background: #fff; }
button { font: inherit; padding: 5px 12px; border-radius: 4px; border: 1px solid #b8c1cc; background: #fff; cursor: pointer; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { background: var(--bad); border-color: var(--bad); color: #fff; }
header button { background: transparent; color: #c9d4e3; border-color: #4a5667; }
.actions { display: flex; gap: 8px; margin: 10px 0; align-items: center; }
.notice { background: #eef4ff; border: 1px solid #c7d7fb; padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; }
.error { background: #fdecea; border: 1px solid #f5c2bd; padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; }
.login { max-width: 360px; margin: 80px auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 24px; }
.login form { display: flex; flex-direction: column; gap: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 12px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; word-break: break-all; }
`;

/** Ticks or clears every checkbox of a form from its "all" box: the one convenience that needs script. */
export const SCRIPT = `
document.addEventListener('change', function (e) {
  var box = e.target;
  if (!box || !box.matches || !box.matches('input[data-select-all]')) return;
  box.form.querySelectorAll('input[name="job"]').forEach(function (b) { b.checked = box.checked; });
});
`;
