import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { TcpProxy } from './tcp-proxy.js';
import { infoField, waitFor } from './redis.js';

/**
 * Redis topologies started by the tests from the machine's `redis-server`, `redis-cli` and `openssl`:
 * a Sentinel group (master, replicas, sentinels), a Cluster (masters with one replica each) and a TLS
 * server. Every process runs on a free loopback port in a temp directory that `close()` removes.
 */

const LOCALHOST = '127.0.0.1';

/** Ports (and their cluster bus ports) this process has handed out. */
const pickedPorts = new Set<number>();

/** A free port whose cluster bus port (+10000) is free too and still a valid port. */
export async function freeRedisPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    // Nodes start without waiting for each other: a port picked a moment ago may not be bound yet.
    if ([port, port + 10_000].some((p) => pickedPorts.has(p))) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) {
      pickedPorts.add(port).add(port + 10_000);
      return port;
    }
  }
  throw new Error('no free port pair for redis (port and port + 10000)');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, LOCALHOST, () => server.close(() => resolve(true)));
  });
}

export interface TlsFiles {
  /** Absolute paths: redis-server changes into `--dir` before it loads them. */
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed none of these: a client trusting it must reject the server. */
  readonly otherCa: string;
}

/**
 * A CA, a server certificate for IP:127.0.0.1 and DNS:localhost (data nodes are announced by IP),
 * a client certificate and an unrelated CA, made with openssl in `dir`.
 */
export function makeCerts(dir: string): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const path = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => {
    const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    if (run.status !== 0) throw new Error(`openssl ${args[0]} failed: ${run.stderr || run.error}`);
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string) =>
    openssl(
      'req',
      '-x509',
      ...key,
      '-keyout',
      path(`${name}.key`),
      '-out',
      path(`${name}.crt`),
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    );
  const signed = (name: string, ext: string) => {
    writeFileSync(path(`${name}.ext`), ext);
    openssl(
      'req',
      '-new',
      ...key,
      '-keyout',
      path(`${name}.key`),
      '-out',
      path(`${name}.csr`),
      '-subj',
      `/CN=${name}`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      path(`${name}.csr`),
      '-CA',
      path('ca.crt'),
      '-CAkey',
      path('ca.key'),
      '-CAcreateserial',
      '-out',
      path(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      path(`${name}.ext`),
    );
  };
  ca('ca');
  ca('other-ca');
  // Redis uses the server certificate as a client too (replication, sentinel to node).
  signed('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  signed('client', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: path('ca.crt'),
    serverCert: path('server.crt'),
    serverKey: path('server.key'),
    clientCert: path('client.crt'),
    clientKey: path('client.key'),
    otherCa: path('other-ca.crt'),
  };
}

/** ioredis TLS options that trust the test CA and present the client certificate. */
export function clientTls(files: TlsFiles): NonNullable<RedisOptions['tls']> {
  return {
    ca: readFileSync(files.ca),
    cert: readFileSync(files.clientCert),
    key: readFileSync(files.clientKey),
  };
}

function tlsArgs(files: TlsFiles, port: number, authClients: 'yes' | 'optional' | 'no'): string[] {
  return [
    '--port',
    '0',
    '--tls-port',
    String(port),
    '--tls-cert-file',
    files.serverCert,
    '--tls-key-file',
    files.serverKey,
    '--tls-ca-cert-file',
    files.ca,
    '--tls-auth-clients',
    authClients,
    '--tls-replication',
    'yes',
    '--tls-cluster',
    'yes',
  ];
}

interface ClientAccess {
  readonly password?: string;
  readonly tls?: TlsFiles;
}

/** One short-lived connection for a command; the helpers never share one with the code under test. */
async function withClient<T>(port: number, access: ClientAccess, use: (c: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: LOCALHOST,
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    connectTimeout: 2_000,
    commandTimeout: 5_000,
    ...(access.password ? { password: access.password } : {}),
    ...(access.tls ? { tls: clientTls(access.tls) } : {}),
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** One redis-server process (data node or sentinel) that the topology owns. */
class RedisProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly args: string[],
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.child) return;
    mkdirSync(this.dir, { recursive: true });
    const child = spawn('redis-server', this.args, { stdio: 'ignore', cwd: this.dir });
    this.child = child;
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  async kill(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function waitPing(port: number, access: ClientAccess, what: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => withClient(port, access, async (c) => (await c.ping()) === 'PONG'), {
    timeoutMs,
    intervalMs: 50,
    what,
  });
}

export interface SentinelGroupOptions {
  readonly replicas?: number;
  readonly sentinels?: number;
  readonly downAfterMs?: number;
  readonly failoverTimeoutMs?: number;
  readonly password?: string;
  /** Everything (data nodes, replication, sentinels) speaks TLS only, with these files. */
  readonly tls?: TlsFiles;
  readonly name?: string;
  /** False: no proxy in front of the first master (a benchmark's setup); `freezeReplication` is then unavailable. */
  readonly proxied?: boolean;
}

/**
 * A master, `replicas` replicas and `sentinels` sentinels (quorum: a majority). The first master is
 * known to everyone (sentinels, replicas, clients) by the address of a TcpProxy in front of it, so a
 * test can make the replicas lag (`freezeReplication`) without stopping them: the sentinels still
 * see them healthy and promote one. (A replica pointed at another address than the one the
 * sentinels monitor is soon "fixed" by them, which would bypass a proxy of its own.)
 */
export class SentinelGroup {
  readonly name: string;
  private readonly root = mkdtempSync(join(tmpdir(), 'imkit-bridge-sentinel-'));
  private readonly nodes: RedisProcess[] = [];
  private readonly sentinelNodes: RedisProcess[] = [];
  private proxy: TcpProxy | undefined;
  private masterPort = 0;

  private constructor(private readonly options: SentinelGroupOptions) {
    this.name = options.name ?? 'mymaster';
  }

  static async start(options: SentinelGroupOptions = {}): Promise<SentinelGroup> {
    const group = new SentinelGroup(options);
    try {
      await group.boot();
    } catch (err) {
      await group.close();
      throw err;
    }
    return group;
  }

  private get access(): ClientAccess {
    return {
      ...(this.options.password ? { password: this.options.password } : {}),
      ...(this.options.tls ? { tls: this.options.tls } : {}),
    };
  }

  private get scheme(): string {
    return this.options.tls ? 'rediss' : 'redis';
  }

  /** The sentinels' addresses, as `redis.sentinels` takes them. */
  get sentinelUrls(): string[] {
    return this.sentinelNodes.map((s) => `${this.scheme}://${LOCALHOST}:${s.port}`);
  }

  /** Pids of the group's running redis-server processes (data nodes and sentinels), for CPU figures. */
  get pids(): number[] {
    return [...this.nodes, ...this.sentinelNodes].flatMap((n) => (n.pid === undefined ? [] : [n.pid]));
  }

  /** The current master's port, as this group last saw it (after `killMaster`/`failover`, the new one). */
  get master(): number {
    return this.masterPort;
  }

  private dataArgs(port: number, dir: string): string[] {
    const { password, tls } = this.options;
    return [
      ...(tls ? tlsArgs(tls, port, 'optional') : ['--port', String(port)]),
      '--bind',
      LOCALHOST,
      '--dir',
      dir,
      '--logfile',
      join(dir, 'redis.log'),
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      ...(password ? ['--requirepass', password, '--masterauth', password] : []),
    ];
  }

  private async boot(): Promise<void> {
    const {
      replicas = 2,
      sentinels = 3,
      downAfterMs = 1_000,
      failoverTimeoutMs = 5_000,
      password,
      tls,
    } = this.options;
    const masterPort = await freeRedisPort();
    const masterDir = join(this.root, 'master');
    const master = new RedisProcess(masterPort, masterDir, this.dataArgs(masterPort, masterDir));
    this.nodes.push(master);
    master.start();
    await waitPing(master.port, this.access, `master on ${master.port}`);
    const proxy = this.options.proxied === false ? undefined : await TcpProxy.start(master.port);
    this.proxy = proxy;
    this.masterPort = proxy?.port ?? master.port;

    for (let i = 0; i < replicas; i++) {
      const port = await freeRedisPort();
      const dir = join(this.root, `replica-${i}`);
      const node = new RedisProcess(port, dir, [
        ...this.dataArgs(port, dir),
        '--replicaof',
        LOCALHOST,
        String(this.masterPort),
      ]);
      this.nodes.push(node);
      node.start();
    }
    for (const node of this.nodes.slice(1)) {
      await waitPing(node.port, this.access, `replica on ${node.port}`);
      await waitFor(
        () =>
          withClient(
            node.port,
            this.access,
            async (c) => infoField(await c.info('replication'), 'master_link_status') === 'up',
          ),
        { timeoutMs: 15_000, intervalMs: 100, what: `replica ${node.port} in sync` },
      );
    }

    const quorum = Math.floor(sentinels / 2) + 1;
    for (let i = 0; i < sentinels; i++) {
      const port = await freeRedisPort();
      const dir = join(this.root, `sentinel-${i}`);
      mkdirSync(dir, { recursive: true });
      // Each sentinel rewrites its own config file.
      const conf = join(dir, 'sentinel.conf');
      const lines = [
        ...(tls
          ? [
              `port 0`,
              `tls-port ${port}`,
              `tls-cert-file ${tls.serverCert}`,
              `tls-key-file ${tls.serverKey}`,
              `tls-ca-cert-file ${tls.ca}`,
              `tls-auth-clients optional`,
              `tls-replication yes`,
            ]
          : [`port ${port}`]),
        `bind ${LOCALHOST}`,
        `dir ${dir}`,
        `logfile ${join(dir, 'sentinel.log')}`,
        `sentinel announce-ip ${LOCALHOST}`,
        `sentinel monitor ${this.name} ${LOCALHOST} ${this.masterPort} ${quorum}`,
        `sentinel down-after-milliseconds ${this.name} ${downAfterMs}`,
        `sentinel failover-timeout ${this.name} ${failoverTimeoutMs}`,
        `sentinel parallel-syncs ${this.name} 1`,
        ...(password ? [`sentinel auth-pass ${this.name} ${password}`, `requirepass ${password}`] : []),
      ];
      writeFileSync(conf, lines.join('\n') + '\n');
      const sentinel = new RedisProcess(port, dir, [conf, '--sentinel']);
      this.sentinelNodes.push(sentinel);
      sentinel.start();
    }
    // Sentinels list replicas and each other only after their INFO and hello rounds (~2-3 s).
    for (const sentinel of this.sentinelNodes) {
      await waitPing(sentinel.port, this.access, `sentinel on ${sentinel.port}`);
      await waitFor(
        () =>
          withClient(sentinel.port, this.access, async (c) => {
            const known = (await c.call('SENTINEL', 'replicas', this.name)) as unknown[];
            const peers = (await c.call('SENTINEL', 'sentinels', this.name)) as unknown[];
            return known.length === replicas && peers.length === sentinels - 1;
          }),
        {
          timeoutMs: 15_000,
          intervalMs: 100,
          what: `sentinel ${sentinel.port} to see ${replicas} replicas and ${sentinels - 1} peers`,
        },
      );
    }
  }

  /** The master address the sentinels agree on (a majority), or undefined. */
  async agreedMaster(): Promise<number | undefined> {
    const votes = new Map<number, number>();
    for (const sentinel of this.sentinelNodes.filter((s) => s.running)) {
      const addr = await withClient(sentinel.port, this.access, (c) =>
        c.call('SENTINEL', 'get-master-addr-by-name', this.name),
      ).catch(() => undefined);
      const port = Array.isArray(addr) ? Number(addr[1]) : undefined;
      if (port) votes.set(port, (votes.get(port) ?? 0) + 1);
    }
    const majority = Math.floor(this.sentinelNodes.length / 2) + 1;
    for (const [port, count] of votes) if (count >= majority) return port;
    return undefined;
  }

  /**
   * SIGKILLs the master, then waits (bounded) until a majority of sentinels names a new one and it
   * answers as master. Returns the new master's port.
   */
  async killMaster(options: { timeoutMs?: number } = {}): Promise<number> {
    const old = this.masterPort;
    if (this.proxy && old === this.proxy.port) {
      await this.nodes[0]!.kill();
      // A dead host refuses connections; its replication links, held or not, are gone.
      await this.proxy.refuse();
    } else {
      await this.nodes.find((n) => n.port === old)?.kill();
    }
    return this.awaitNewMaster(old, options.timeoutMs ?? 20_000);
  }

  /** `SENTINEL FAILOVER` (a graceful switch, as an upgrade does); waits for the new master. */
  async failover(options: { timeoutMs?: number } = {}): Promise<number> {
    const old = this.masterPort;
    await withClient(this.sentinelNodes[0]!.port, this.access, (c) =>
      c.call('SENTINEL', 'failover', this.name),
    );
    return this.awaitNewMaster(old, options.timeoutMs ?? 20_000);
  }

  private async awaitNewMaster(old: number, timeoutMs: number): Promise<number> {
    const port = await waitFor(
      async () => {
        const agreed = await this.agreedMaster();
        if (agreed === undefined || agreed === old) return undefined;
        const role = await withClient(agreed, this.access, (c) => c.call('ROLE') as Promise<unknown[]>);
        return role[0] === 'master' ? agreed : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `sentinels to promote a new master (old ${old})` },
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\nfirst sentinel's log:\n${this.sentinelLog()}`);
    });
    this.masterPort = port;
    return port;
  }

  /** The end of the first sentinel's log, for failure messages. */
  sentinelLog(lines = 40): string {
    try {
      return readFileSync(join(this.root, 'sentinel-0', 'sentinel.log'), 'utf8')
        .trim()
        .split('\n')
        .slice(-lines)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Replication from the first master stops flowing to every replica (it queues at the master); the
   * replicas stay up. Other connections to the master flow on.
   */
  async freezeReplication(): Promise<void> {
    const proxy = this.proxy;
    if (!proxy || this.masterPort !== proxy.port)
      throw new Error('only the first master replicates through the proxy');
    const list = await withClient(this.nodes[0]!.port, this.access, (c) =>
      c.call('CLIENT', 'LIST', 'TYPE', 'replica'),
    );
    // The master sees each replica at the proxy's upstream socket.
    const ports = new Set([...String(list).matchAll(/addr=[^ ]*:(\d+) /g)].map((m) => Number(m[1])));
    if (ports.size === 0) throw new Error('the master lists no replica connections');
    proxy.hold((port) => ports.has(port));
  }

  thaw(): void {
    this.proxy?.release();
  }

  /** A client on the current master, for the test's own checks. */
  client(port = this.masterPort): Redis {
    const client = new Redis({
      host: LOCALHOST,
      port,
      maxRetriesPerRequest: 1,
      ...(this.options.password ? { password: this.options.password } : {}),
      ...(this.options.tls ? { tls: clientTls(this.options.tls) } : {}),
    });
    client.on('error', () => {});
    return client;
  }

  async close(): Promise<void> {
    await Promise.all([...this.sentinelNodes, ...this.nodes].map((n) => n.kill()));
    await this.proxy?.close();
    rmSync(this.root, { recursive: true, force: true });
  }
}

export interface ClusterNode {
  readonly port: number;
  readonly role: 'master' | 'replica';
  /** Node id of the master (replicas) or the node's own id. */
  readonly id: string;
  readonly masterId: string | undefined;
  readonly slots: [number, number][];
}

export interface ClusterGroupOptions {
  readonly masters?: number;
  readonly replicasPerMaster?: number;
  readonly nodeTimeoutMs?: number;
}

/**
 * A Redis Cluster of `masters` masters with `replicasPerMaster` replicas each, created with
 * `redis-cli --cluster create`. Replicas run with `cluster-replica-validity-factor 0`, so a replica
 * that was stopped while its master died can still be promoted.
 */
export class ClusterGroup {
  private readonly root = mkdtempSync(join(tmpdir(), 'imkit-bridge-cluster-'));
  private readonly nodes: RedisProcess[] = [];

  private constructor(private readonly options: ClusterGroupOptions) {}

  static async start(options: ClusterGroupOptions = {}): Promise<ClusterGroup> {
    const group = new ClusterGroup(options);
    try {
      await group.boot();
    } catch (err) {
      await group.close();
      throw err;
    }
    return group;
  }

  /** Seed addresses, as `redis.cluster` takes them. */
  get urls(): string[] {
    return this.nodes.map((n) => `redis://${LOCALHOST}:${n.port}`);
  }

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /** Pids of the running nodes, for CPU figures. */
  get pids(): number[] {
    return this.nodes.flatMap((n) => (n.pid === undefined ? [] : [n.pid]));
  }

  private async boot(): Promise<void> {
    const { masters = 3, replicasPerMaster = 1, nodeTimeoutMs = 1_000 } = this.options;
    const total = masters * (1 + replicasPerMaster);
    for (let i = 0; i < total; i++) {
      const port = await freeRedisPort();
      const dir = join(this.root, `node-${port}`);
      const node = new RedisProcess(port, dir, [
        '--port',
        String(port),
        '--bind',
        LOCALHOST,
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--maxmemory-policy',
        'noeviction',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
        '--cluster-replica-validity-factor',
        '0',
        // A shard whose replicas are stopped would otherwise take over another shard's spare replica,
        // which then copies the master's data: tests stop replicas to make a master's writes unreplicated.
        '--cluster-allow-replica-migration',
        'no',
      ]);
      this.nodes.push(node);
      node.start();
    }
    for (const node of this.nodes) await waitPing(node.port, {}, `cluster node on ${node.port}`);
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...this.nodes.map((n) => `${LOCALHOST}:${n.port}`),
        '--cluster-replicas',
        String(replicasPerMaster),
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    await this.awaitHealthy(30_000, masters);
  }

  /** Waits until every running node says `cluster_state:ok` and sees `masters` masters with replicas. */
  async awaitHealthy(timeoutMs = 20_000, masters = this.options.masters ?? 3): Promise<void> {
    await waitFor(
      async () => {
        for (const node of this.nodes.filter((n) => n.running)) {
          const ok = await withClient(node.port, {}, async (c) => {
            const info = (await c.call('CLUSTER', 'INFO')) as string;
            return infoField(info, 'cluster_state') === 'ok';
          });
          if (!ok) return false;
        }
        const layout = await this.layout();
        return layout.filter((n) => n.role === 'master' && n.slots.length > 0).length === masters;
      },
      { timeoutMs, intervalMs: 100, what: 'cluster_state:ok on every node' },
    );
  }

  /** CLUSTER NODES as seen by a running node (failed nodes left out). */
  async layout(): Promise<ClusterNode[]> {
    const seed = this.nodes.find((n) => n.running);
    if (!seed) throw new Error('no cluster node running');
    const text = (await withClient(seed.port, {}, (c) => c.call('CLUSTER', 'NODES'))) as string;
    const nodes: ClusterNode[] = [];
    for (const line of text.trim().split('\n')) {
      const [id, addr, flags, masterId, , , , , ...slotRanges] = line.split(' ');
      if (!id || !addr || !flags || flags.includes('fail') || flags.includes('noaddr')) continue;
      const port = Number(addr.split('@')[0]!.split(':')[1]);
      const slots = slotRanges
        .filter((r) => !r.startsWith('['))
        .map((r): [number, number] => {
          const [from, to] = r.split('-').map(Number);
          return [from!, to ?? from!];
        });
      nodes.push({
        port,
        id,
        role: flags.includes('master') ? 'master' : 'replica',
        masterId: masterId === '-' ? undefined : masterId,
        slots,
      });
    }
    return nodes;
  }

  async keySlot(key: string): Promise<number> {
    const seed = this.nodes.find((n) => n.running)!;
    return Number(await withClient(seed.port, {}, (c) => c.call('CLUSTER', 'KEYSLOT', key)));
  }

  /** Port of the master serving `key`'s slot. */
  async masterOf(key: string): Promise<number> {
    const slot = await this.keySlot(key);
    const owner = (await this.layout()).find(
      (n) => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b),
    );
    if (!owner) throw new Error(`no master serves slot ${slot}`);
    return owner.port;
  }

  /** Port of a replica of the master on `masterPort`. */
  async replicaOf(masterPort: number): Promise<number> {
    const [replica] = await this.replicasOf(masterPort);
    if (replica === undefined) throw new Error(`no replica of ${masterPort}`);
    return replica;
  }

  /** Ports of every replica of the master on `masterPort`. */
  async replicasOf(masterPort: number): Promise<number[]> {
    const layout = await this.layout();
    const master = layout.find((n) => n.port === masterPort);
    return layout.filter((n) => n.role === 'replica' && n.masterId === master?.id).map((n) => n.port);
  }

  private node(port: number): RedisProcess {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no cluster node on ${port}`);
    return node;
  }

  /** SIGSTOP: the node keeps its sockets but neither answers nor replicates. */
  stop(port: number): void {
    this.node(port).signal('SIGSTOP');
  }

  cont(port: number): void {
    this.node(port).signal('SIGCONT');
  }

  /** `CLUSTER FAILOVER` on a replica (graceful); waits until it serves its slots and the cluster is ok. */
  async failover(replicaPort: number, timeoutMs = 20_000): Promise<void> {
    await withClient(replicaPort, {}, (c) => c.call('CLUSTER', 'FAILOVER'));
    await waitFor(
      () => withClient(replicaPort, {}, async (c) => ((await c.call('ROLE')) as unknown[])[0] === 'master'),
      { timeoutMs, intervalMs: 100, what: `replica ${replicaPort} to take over` },
    );
    // The other nodes learn of the switch by gossip: `layout()` (and so `masterOf`) reads one of them.
    await waitFor(
      async () => (await this.layout()).some((n) => n.port === replicaPort && n.role === 'master'),
      {
        timeoutMs,
        intervalMs: 100,
        what: `the cluster to list ${replicaPort} as a master`,
      },
    );
    await this.awaitHealthy(timeoutMs);
  }

  /**
   * SIGKILLs the master serving `key`. With `wait` (default), waits until another node serves the
   * slot and the cluster is ok; returns the new master's port (or the old one without `wait`).
   */
  async killMaster(key: string, options: { wait?: boolean; timeoutMs?: number } = {}): Promise<number> {
    const old = await this.masterOf(key);
    await this.node(old).kill();
    if (options.wait === false) return old;
    return this.awaitNewMaster(key, old, options.timeoutMs ?? 20_000);
  }

  async awaitNewMaster(key: string, old: number, timeoutMs = 20_000): Promise<number> {
    const port = await waitFor(
      async () => {
        const now = await this.masterOf(key).catch(() => undefined);
        return now !== undefined && now !== old ? now : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `a new master for ${key} (old ${old})` },
    );
    await waitFor(
      () =>
        withClient(
          port,
          {},
          async (c) => infoField((await c.call('CLUSTER', 'INFO')) as string, 'cluster_state') === 'ok',
        ),
      { timeoutMs, intervalMs: 100, what: 'cluster_state:ok after failover' },
    );
    return port;
  }

  /** A plain client on one node, for the test's own checks. */
  client(port: number): Redis {
    const client = new Redis({ host: LOCALHOST, port, maxRetriesPerRequest: 1 });
    client.on('error', () => {});
    return client;
  }

  async close(): Promise<void> {
    // SIGKILL ends stopped processes too.
    await Promise.all(this.nodes.map((n) => n.kill()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

export interface TlsRedisOptions {
  readonly authClients?: 'yes' | 'optional';
  readonly password?: string;
}

/** A TLS-only redis-server (`--port 0 --tls-port P`) with certificates made at start. */
export class TlsRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-tls-redis-'));
  readonly certs: TlsFiles;
  private readonly process: RedisProcess;

  private constructor(
    readonly port: number,
    private readonly options: TlsRedisOptions,
  ) {
    this.certs = makeCerts(join(this.dir, 'certs'));
    this.process = new RedisProcess(port, join(this.dir, 'data'), [
      ...tlsArgs(this.certs, port, options.authClients ?? 'optional'),
      '--bind',
      LOCALHOST,
      '--dir',
      join(this.dir, 'data'),
      '--save',
      '',
      '--appendonly',
      'no',
      ...(options.password ? ['--requirepass', options.password] : []),
    ]);
  }

  static async start(options: TlsRedisOptions = {}): Promise<TlsRedis> {
    const server = new TlsRedis(await freeRedisPort(), options);
    try {
      server.process.start();
      await waitPing(
        server.port,
        { tls: server.certs, ...(options.password ? { password: options.password } : {}) },
        `TLS redis on ${server.port}`,
      );
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  /** `rediss://127.0.0.1:P` without credentials (the password goes in `redis.password`). */
  get url(): string {
    return `rediss://${LOCALHOST}:${this.port}`;
  }

  async close(): Promise<void> {
    await this.process.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
