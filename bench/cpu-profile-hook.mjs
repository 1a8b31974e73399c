// Loaded with NODE_OPTIONS="--import <this file>" by `npm run bench -- --profile`: Node 20 does not
// accept --cpu-prof in NODE_OPTIONS, and the bridge is started through the shared test helper, so
// the profiler is started in-process instead and the profile written on exit, like --cpu-prof does.
// With BENCH_CPU_PROF_ON_SIGNAL set, sampling starts at SIGUSR2 instead of at start-up, so that a
// bench can leave start-up (placing sessions) and the idle stretch out of the profile.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  let started = false;
  const start = () => {
    started = true;
    session.post('Profiler.start');
  };
  if (process.env.BENCH_CPU_PROF_ON_SIGNAL) process.once('SIGUSR2', start);
  else start();
  process.on('exit', () => {
    if (!started) return;
    // The in-process session answers synchronously, so this completes before the process ends.
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(join(dir, `bridge-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
