/**
 * `npm run demo`: the whole bridge on this machine with nothing to configure. Starts a private
 * redis-server (or uses $REDIS_URL), the IMKIT simulator playing a short conversation, a local webhook
 * sink that verifies every Standard Webhooks signature, and `imkit-bridge run` as a child process.
 * Prints one line per verified delivery and a summary.
 *
 *   npm run demo                  play the conversation, wait for every delivery, stop
 *   npm run demo -- --events N    then send chat messages (at most 200 a second) until N deliveries
 *                                 are verified: exit 0, or 1 if not within 60 s + 20 ms per event
 *   npm run demo -- --keep        leave everything running as a playground: prints the config file,
 *                                 the admin URLs, the log and how to send more events; Ctrl-C stops
 *   npm run demo -- --destination redis-stream|nats|amqp|bullmq
 *                                 also deliver to a broker destination of that type and print each
 *                                 event as it lands there: redis-stream (XREAD, the demo's Redis),
 *                                 nats (a private nats-server, or NATS_URL), amqp (AMQP_URL, default
 *                                 the local RabbitMQ: a demo exchange and queue), bullmq (a Worker on
 *                                 a queue in the demo's Redis); --events N then counts both
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ImkitSimulator } from '../test/sim/imkit-simulator.js';
import { WebhookReceiver } from '../test/support/receiver.js';
import { RedisServer, freePort, hasRedisServer } from '../test/support/redis.js';
import {
  DEMO_DESTINATION_TYPES,
  startBrokerSink,
  type BrokerSink,
  type DemoDestinationType,
} from './demo/broker-sink.js';

const BASE_DEADLINE_MS = 60_000;
const DEADLINE_MS_PER_EVENT = 20;
/** Generated traffic: up to this many chat messages per tick, one tick every TICK_MS (200 a second). */
const MESSAGES_PER_TICK = 10;
const TICK_MS = 50;
/** The most messages one control request may ask for. */
const MAX_CONTROL_COUNT = 1_000;
const SECRET = 'whsec_ZGVtby1zZWNyZXQtZm9yLWlta2l0LWJyaWRnZS1kZW1v';
const BOT = 'demo-bot';
const ROOM = 'room-launch';
const MEMBERS = [BOT, 'alice', 'bob'];
const CLI = resolve(import.meta.dirname, '../dist/cli.js');

const { values } = parseArgs({
  options: { events: { type: 'string' }, keep: { type: 'boolean' }, destination: { type: 'string' } },
});
const wanted = values.events === undefined ? undefined : Number(values.events);
if (wanted !== undefined && (!Number.isInteger(wanted) || wanted < 1)) {
  console.error('--events takes a positive whole number');
  process.exit(1);
}
const destinationType = values.destination as DemoDestinationType | undefined;
if (destinationType !== undefined && !DEMO_DESTINATION_TYPES.includes(destinationType)) {
  console.error(`--destination takes one of ${DEMO_DESTINATION_TYPES.join(', ')}`);
  process.exit(1);
}
const keep = values.keep ?? false;
const externalRedis = process.env.REDIS_URL || undefined;
if (!externalRedis && !hasRedisServer()) {
  console.error('demo needs redis-server on PATH (apt-get install redis-server) or REDIS_URL set');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-demo-'));
// Detached, so Ctrl-C reaches only this process, which stops the bridge before Redis.
const redis = externalRedis ? undefined : await RedisServer.start({ detached: true });
const redisUrl = externalRedis ?? redis!.url;
const sim = await ImkitSimulator.start({ pingIntervalMs: 10_000 });
const sink = await WebhookReceiver.start({ secret: SECRET });
sim.addClient(BOT, 'Audit bot');
const tokenFile = join(dir, `${BOT}.token`);
writeFileSync(tokenFile, sim.issueToken(BOT));
const adminPort = await freePort();
const adminUrl = `http://127.0.0.1:${adminPort}`;
let broker: BrokerSink | undefined;
try {
  broker = destinationType
    ? await startBrokerSink(destinationType, { redisUrl, tag: `imkit-demo-${process.pid}` })
    : undefined;
} catch (err) {
  console.error((err as Error).message);
  await Promise.all([sink.close(), sim.close(), redis?.close()]);
  process.exit(1);
}
/** The broker destination's entry in bridge.yaml: the same events as the webhook sink. */
const destinationsYaml = broker
  ? `destinations:
  - id: demo-${broker.type}
    type: ${broker.type}
${Object.entries(broker.destination)
  .map(([key, value]) => `    ${key}: ${JSON.stringify(value)}\n`)
  .join('')}    events: ["*", "bridge.connected"]
    retry: { schedule: [200ms, 1s, 5s] }
`
  : '';

const configFile = join(dir, 'bridge.yaml');
writeFileSync(
  configFile,
  `# Written by npm run demo
redis: { url: "${redisUrl}", prefix: "imkit-bridge-demo-${process.pid}" }
server: { host: 127.0.0.1, port: ${adminPort} }
imkit: { url: "${sim.url}", clientKey: ${sim.clientKey}, apiKey: ${sim.apiKey} }
accounts:
  - id: ${BOT}
    tokenFile: "${tokenFile}"
    encoding: base64
webhooks:
  - id: demo-sink
    url: "${sink.url}"
    secret: ${SECRET}
    events: ["*", "bridge.connected"]
    retry: { schedule: [200ms, 1s, 5s] }
${destinationsYaml}log: { level: info }
`,
);
const logFile = join(dir, 'bridge.log');
const bridge = spawn(process.execPath, [CLI, 'run', '--config', configFile], {
  stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')],
  detached: true,
});
let bridgeExit: number | null | undefined;
bridge.once('exit', (code) => (bridgeExit = code));

console.log(`imkit-bridge demo: simulator ${sim.url}, sink ${sink.url}, redis ${redisUrl}`);
if (broker) console.log(`broker destination demo-${broker.type}: ${broker.where}`);
console.log(`bridge config ${configFile}, log ${logFile}\n`);

const started = Date.now();
let printed = 0;
const seen = new Set<string>();
let unverified = 0;
let duplicates = 0;
let printedLandings = 0;
const landedIds = new Set<string>();
let landedDuplicates = 0;
let stopping: Promise<void> | undefined;

/** The few payload fields the demo prints; IMKIT payloads carry more. */
interface DemoData {
  _id?: string;
  message?: unknown;
  messageType?: string;
  editedAt?: string;
  sender?: { _id?: string } | string;
  memberID?: string;
  messageID?: string;
  room?: string;
}

function senderOf(d: DemoData): string {
  return typeof d.sender === 'string' ? d.sender : (d.sender?._id ?? 'someone');
}

/** One line for an event that arrived at `at` (ms): what it was and how long after receipt. */
function describe(rawBody: string, at: number): string {
  const body = JSON.parse(rawBody) as {
    id: string;
    type: string;
    timestamp: string;
    data: DemoData | null;
  };
  const d: DemoData = body.data ?? {};
  let what = '';
  if (body.type === 'chat message') {
    const text = typeof d.message === 'string' ? d.message : JSON.stringify(d.message);
    what =
      d.messageType === 'recall'
        ? `${senderOf(d)} recalled ${d._id}`
        : `${senderOf(d)}: ${JSON.stringify(text)}${d.editedAt ? ' (edited)' : ''}`;
  } else if (body.type === 'lastRead') what = `${d.memberID} read up to ${d.messageID}`;
  else if (body.type === 'typing') what = `${senderOf(d)} is typing in ${d.room}`;
  else if (body.type === 'bridge.connected') what = `session live`;
  else what = JSON.stringify(d).slice(0, 60);
  const latency = at - Date.parse(body.timestamp);
  return `${body.id}  ${body.type.padEnd(16)} ${what}  (${latency} ms)`;
}

function drainPrints(): void {
  for (; printed < sink.requests.length; printed++) {
    const request = sink.requests[printed]!;
    if (request.status === undefined || request.status >= 300) continue;
    const id = String(request.headers['webhook-id']);
    if (seen.has(id)) duplicates++;
    seen.add(id);
    if (!request.verified) unverified++;
    console.log(`${request.verified ? 'verified' : 'UNVERIFIED'}  ${describe(request.body, request.at)}`);
  }
  for (; broker && printedLandings < broker.landed.length; printedLandings++) {
    const landing = broker.landed[printedLandings]!;
    const id = String(landing.id);
    if (landedIds.has(id)) landedDuplicates++;
    landedIds.add(id);
    console.log(`landed in ${broker.type}  ${describe(landing.body, landing.at)}`);
  }
}

/** Events delivered everywhere the demo delivers: the webhook sink and, with --destination, the broker. */
function deliveredEverywhere(): number {
  return broker ? Math.min(seen.size, landedIds.size) : seen.size;
}

/** Polls `check`, printing deliveries, until it holds, the deadline passes or the bridge exits. */
async function until(check: () => boolean, ms: number, tick?: () => void): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && bridgeExit === undefined && !stopping) {
    drainPrints();
    if (check()) return true;
    tick?.();
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  drainPrints();
  return check();
}

function say(text: string, sender = 'alice'): string {
  return sim.sendMessage(ROOM, text, { members: MEMBERS, sender })._id;
}

/** A short conversation; returns how many deliveries it makes. */
function playConversation(): number {
  const m1 = say('Morning! Is the launch still on for 10:00? 🚀');
  sim.emit(BOT, 'typing', { room: ROOM, message: 'typing', sender: 'bob' });
  const m2 = say('Yes — "final" build is green ✅', 'bob');
  sim.emit(BOT, 'lastRead', { roomID: ROOM, memberID: 'alice', messageID: m2 });
  sim.editMessage(m2, 'Yes — "final" build is green ✅ (tagged v2.4.0)');
  const m3 = say('oops, wrong room');
  sim.recallMessage(m3);
  say('مرحبا 👋 — see you at the stand-up', 'bob');
  sim.emit(BOT, 'lastRead', { roomID: ROOM, memberID: 'bob', messageID: m1 });
  return 9;
}

/**
 * The playground's "send more" endpoint: `POST /message` sends its body (or "hello") as a chat
 * message in the demo room, `?count=N` that many times, `?sender=bob` as someone else.
 */
async function startControl(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'POST' || url.pathname !== '/message') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('POST /message[?count=N&sender=NAME]\n');
      return;
    }
    const count = Number(url.searchParams.get('count') ?? '1');
    if (!Number.isInteger(count) || count < 1 || count > MAX_CONTROL_COUNT) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`count: 1 to ${MAX_CONTROL_COUNT}\n`);
      return;
    }
    const sender = url.searchParams.get('sender') ?? 'alice';
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body = (body + chunk).slice(0, 10_000)));
    req.on('end', () => {
      const text = body.trim() || 'hello';
      const ids = Array.from({ length: count }, (_, i) =>
        say(count > 1 ? `${text} #${i + 1}` : text, sender),
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify({ sent: ids })}\n`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/message`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function printPlayground(controlUrl: string): void {
  const cli = `node ${CLI}`;
  console.log(`
The demo keeps running. Everything it started:
  bridge config  ${configFile}
  bridge log     ${logFile}
  admin          ${adminUrl}/status   ${adminUrl}/readyz   ${adminUrl}/metrics
  IMKIT (sim)    ${sim.url}
  webhook sink   ${sink.url}${broker ? `\n  ${broker.type.padEnd(14)} ${broker.where}` : ''}
  redis          ${redisUrl}

Try (no environment variables needed):
  curl -s ${adminUrl}/status
  curl -s -X POST --data 'hello from curl' ${controlUrl}
  curl -s -X POST '${controlUrl}?count=50&sender=bob'
  ${cli} config check --config ${configFile}
  ${cli} dlq list --config ${configFile}

Deliveries${broker ? ` (and events landing in ${broker.type})` : ''} are printed below as they arrive. Ctrl-C stops everything.
`);
}

async function stopAll(control?: { close(): Promise<void> }): Promise<void> {
  if (bridgeExit === undefined) {
    const exited = new Promise((r) => bridge.once('exit', r));
    bridge.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (bridgeExit === undefined) bridge.kill('SIGKILL');
  }
  await control?.close();
  await broker?.close();
  await sink.close();
  await sim.close();
  await redis?.close();
}

let code = 0;
let control: Awaited<ReturnType<typeof startControl>> | undefined;
const onSignal = () => {
  stopping ??= Promise.resolve();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
try {
  const live = await until(() => deliveredEverywhere() >= 1, 20_000);
  if (!live) throw new Error(`the bridge did not connect (exit ${bridgeExit ?? 'none'}); see ${logFile}`);
  const expected = 1 + playConversation();
  const target = Math.max(wanted ?? expected, expected);
  const deadlineMs = BASE_DEADLINE_MS + DEADLINE_MS_PER_EVENT * target;
  // Every chat message is one delivery: send only as many as the target still needs.
  let planned = expected;
  const generate = () => {
    for (let i = 0; i < MESSAGES_PER_TICK && planned < target; i++, planned++) {
      say(`status update ${planned - expected + 1}: all systems nominal`, i % 2 ? 'bob' : 'alice');
    }
  };
  const ok = await until(
    () => deliveredEverywhere() >= target,
    deadlineMs - (Date.now() - started),
    generate,
  );
  const latencies = sink.requests
    .filter((r) => r.status !== undefined && r.status < 300)
    .map((r) => r.at - Date.parse((JSON.parse(r.body) as { timestamp: string }).timestamp))
    .sort((a, b) => a - b);
  const p50 = latencies[Math.floor(latencies.length / 2)] ?? 0;
  console.log(
    `\n${seen.size} events delivered, ${seen.size - unverified} signatures verified, ${duplicates} duplicate deliveries, ` +
      `median latency ${p50} ms, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (broker) {
    console.log(
      `${landedIds.size} events landed in ${broker.type} (${broker.where}), ${landedDuplicates} duplicates`,
    );
  }
  if (stopping) {
    console.error('interrupted');
    code = 1;
  } else if (!ok) {
    const where = broker ? ` and ${target} landed in ${broker.type}` : '';
    console.error(
      `expected ${target} verified deliveries${where} within ${deadlineMs / 1000} s; see ${logFile}`,
    );
    code = 1;
  } else if (unverified > 0) {
    console.error(`${unverified} deliveries failed signature verification`);
    code = 1;
  } else if (keep) {
    control = await startControl();
    printPlayground(control.url);
    await until(() => bridgeExit !== undefined, Infinity);
    if (bridgeExit !== undefined) {
      console.error(`the bridge exited with ${bridgeExit}; see ${logFile}`);
      code = 1;
    } else {
      console.log(`\nstopping: ${seen.size} events delivered, ${duplicates} duplicate deliveries`);
    }
  }
} catch (err) {
  console.error(String((err as Error).message ?? err));
  code = 1;
} finally {
  await stopAll(control);
}
process.exit(code);
