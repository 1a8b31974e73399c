import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Copy as CopyInstruction,
  DockerfileParser,
  Env,
  JSONInstruction,
  type Instruction,
} from 'dockerfile-ast';

export const DOCKERFILE = join(process.cwd(), 'Dockerfile');

export interface Copy {
  /** Build stage named by `--from`, or undefined for the build context. */
  from: string | undefined;
  sources: string[];
  destination: string;
}

/** What a stage of the Dockerfile does, read with the same parser the linter uses. */
export interface Stage {
  name: string;
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  copies: Copy[];
  runs: string[];
  entrypoint: string[];
  cmd: string[];
}

export function readStages(text = readFileSync(DOCKERFILE, 'utf8')): Stage[] {
  const dockerfile = DockerfileParser.parse(text);
  const froms = dockerfile.getFROMs();
  const instructions = dockerfile.getInstructions();
  return froms.map((from, i) => {
    const start = from.getRange().start.line;
    const end = froms[i + 1]?.getRange().start.line ?? Number.POSITIVE_INFINITY;
    const own = instructions.filter(
      (ins) => ins.getRange().start.line > start && ins.getRange().start.line < end,
    );
    return describeStage(from.getBuildStage() ?? String(i), own);
  });
}

export function stage(name: string, stages = readStages()): Stage {
  const found = stages.find((s) => s.name === name);
  if (!found) throw new Error(`Dockerfile has no stage "${name}"`);
  return found;
}

function describeStage(name: string, instructions: Instruction[]): Stage {
  const result: Stage = {
    name,
    workdir: '/',
    env: {},
    user: undefined,
    copies: [],
    runs: [],
    entrypoint: [],
    cmd: [],
  };
  for (const ins of instructions) {
    const args = ins.getArguments().map((a) => a.getValue());
    switch (ins.getKeyword()) {
      case 'WORKDIR':
        result.workdir = args[0] ?? '/';
        break;
      case 'ENV':
        if (!(ins instanceof Env)) throw new Error('ENV not parsed as ENV');
        for (const property of ins.getProperties())
          result.env[property.getName()] = property.getValue() ?? '';
        break;
      case 'USER':
        result.user = args[0];
        break;
      case 'COPY': {
        if (!(ins instanceof CopyInstruction)) throw new Error('COPY not parsed as COPY');
        const from = ins.getFromFlag()?.getValue() ?? undefined;
        result.copies.push({ from, sources: args.slice(0, -1), destination: args.at(-1) ?? '' });
        break;
      }
      case 'RUN':
        result.runs.push(args.join(' '));
        break;
      case 'ENTRYPOINT':
        result.entrypoint = jsonForm(ins);
        break;
      case 'CMD':
        result.cmd = jsonForm(ins);
        break;
    }
  }
  return result;
}

/** Exec form only: a shell-form CMD/ENTRYPOINT would put /bin/sh between tini and node. */
function jsonForm(ins: Instruction): string[] {
  const strings = ins instanceof JSONInstruction ? ins.getJSONStrings() : [];
  if (strings.length === 0) throw new Error(`${ins.getKeyword()} is not in exec (JSON) form`);
  return strings.map((s) => s.getJSONValue());
}
