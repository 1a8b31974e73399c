import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { SimCommand, SimReply } from './sim-process.js';

const HERE = import.meta.dirname;

/** The simulator child process and a request/reply helper over IPC. */
export class SimProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(): Promise<SimProcess> {
    const child = fork(join(HERE, 'sim-process.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const ready = await new Promise<SimReply>((r) => child.once('message', (m) => r(m as SimReply)));
    if (ready.op !== 'ready') throw new Error('simulator did not start');
    return new SimProcess(child, ready.url);
  }

  get pid(): number {
    return this.child.pid!;
  }

  request<T extends SimReply['op']>(command: SimCommand): Promise<Extract<SimReply, { op: T }>> {
    return new Promise((r) => {
      this.child.once('message', (m) => r(m as Extract<SimReply, { op: T }>));
      this.child.send(command);
    });
  }

  async tokens(accounts: string[]): Promise<Record<string, string>> {
    return (await this.request<'tokens'>({ op: 'tokens', accounts })).tokens;
  }

  stop(): void {
    this.child.disconnect();
  }
}
