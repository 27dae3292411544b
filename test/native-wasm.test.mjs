// The native wasm addon (native/), against the real addon and real guests
// (test/fixtures/wasm/*.wat, built into the committed .wasm files by
// test/fixtures/wasm/build.mjs). Every case runs on the main thread and again
// inside a worker_thread, where extensions run in production.
//
// Needs the addon built: scripts/build-native.sh
// Run: node --test test/native-wasm.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { WasmEngine, epochTicks } from '../native/index.js';

const fixture = (name) => readFileSync(new URL(`./fixtures/wasm/${name}.wasm`, import.meta.url));
const GUEST = fixture('guest');

// Small pools: each slot reserves memoryBytesMax of address space.
const engineOptions = { instancesMax: 32, deadlineMs: 50 };

function guestPre(options = engineOptions) {
  return new WasmEngine(options).compile(GUEST).instantiatePre();
}

/** Host callback of the round-trip cases: op 1 prefixes, op 2 upper-cases. */
function host(op, payload) {
  if (op === 1) return Buffer.concat([Buffer.from('host:'), payload]);
  if (op === 2) return Buffer.from(payload.toString('utf8').toUpperCase());
  return null;
}

/** Invokes and returns the thrown error (fails if nothing is thrown). */
function invokeError(instance, exportName, hostFn = host, input = Buffer.alloc(0)) {
  try {
    instance.invoke(exportName, input, hostFn);
  } catch (err) {
    assert.ok(err instanceof Error, 'throws an Error');
    return err;
  }
  assert.fail(`${exportName}: expected an error`);
}

const cases = [
  ['echo and host callbacks round trip', () => {
    const pre = guestPre();
    const instance = pre.instantiate();
    assert.equal(instance.invoke('echo', Buffer.from('hello'), host).toString(), 'hello');
    assert.equal(instance.invoke('echo', Buffer.alloc(0), host).length, 0);
    assert.equal(instance.invoke('echo', new TextEncoder().encode('plain Uint8Array'), host).toString(), 'plain Uint8Array');

    const calls = [];
    const out = instance.invoke('host_echo', Buffer.from('ping'), (op, payload) => {
      calls.push([op, payload.toString()]);
      return host(op, payload);
    });
    assert.equal(out.toString(), 'host:ping');
    assert.deepEqual(calls, [[1, 'ping']]);

    assert.equal(instance.invoke('host_chain', Buffer.from('abc'), host).toString(), 'HOST:ABC');
    assert.equal(instance.invoke('host_echo', Buffer.from('x'), () => null).toString(), '<null>');
    assert.equal(instance.invoke('host_echo', Buffer.from('x'), () => undefined).toString(), '<null>');
    assert.equal(instance.invoke('host_echo', Buffer.from('x'), () => new Uint8Array([79, 75])).toString(), 'OK');
    assert.equal(instance.invoke('host_echo', Buffer.from('x'), () => Buffer.alloc(0)).length, 0);

    const big = Buffer.alloc(3 << 20, 7); // grows guest memory past its first page
    assert.ok(instance.invoke('echo', big, host).equals(big));
    assert.equal(instance.poisoned, false);
  }],

  ['many host calls in one invoke', () => {
    // ~1 µs per host call: 100 000 of them need more than the default 50 ms.
    const instance = guestPre({ ...engineOptions, deadlineMs: 10_000 }).instantiate();
    let count = 0;
    const input = Buffer.alloc(4);
    input.writeUInt32LE(100_000);
    instance.invoke('host_many', input, (op) => {
      assert.equal(op, 3);
      count++;
      return null;
    });
    assert.equal(count, 100_000);
  }],

  ['entry points are the (i32, i32) -> i64 exports', () => {
    const module = new WasmEngine(engineOptions).compile(GUEST);
    assert.ok(module.entryPoints.includes('echo'));
    assert.ok(!module.entryPoints.includes('not_entry'));
    assert.ok(!module.entryPoints.includes('vvm_alloc'));
    assert.match(module.sha256, /^[0-9a-f]{64}$/);
  }],

  ['infinite loop stops at the deadline and a fresh instance works', () => {
    const pre = guestPre({ ...engineOptions, deadlineMs: 20 });
    const instance = pre.instantiate();
    const started = performance.now();
    const err = invokeError(instance, 'spin');
    const elapsedMs = performance.now() - started;
    assert.equal(err.code, 'WASM_DEADLINE');
    assert.ok(elapsedMs < 2000, `stopped after ${elapsedMs} ms`);
    assert.equal(instance.poisoned, true);
    assert.equal(invokeError(instance, 'echo').code, 'WASM_POISONED');
    assert.equal(pre.instantiate().invoke('echo', Buffer.from('ok'), host).toString(), 'ok');
  }],

  ['a slow host callback counts toward the deadline', () => {
    const instance = guestPre({ ...engineOptions, deadlineMs: 20 }).instantiate();
    const err = invokeError(instance, 'host_echo', (op, payload) => {
      const until = performance.now() + 60;
      while (performance.now() < until);
      return payload;
    });
    // Caught when the guest runs again: here, in vvm_alloc for the reply.
    assert.equal(err.code, 'WASM_DEADLINE');
    assert.equal(instance.poisoned, true);
  }],

  ['the deadline restarts on every call', () => {
    const instance = guestPre({ ...engineOptions, deadlineMs: 20 }).instantiate();
    // Calls back to back for three deadlines: each call gets its own budget.
    const input = Buffer.alloc(4);
    input.writeUInt32LE(2000);
    const started = performance.now();
    while (performance.now() - started < 60) instance.invoke('host_many', input, () => null);
    assert.equal(instance.poisoned, false);
  }],

  ['memory growth past memoryBytesMax is WASM_MEMORY_LIMIT', () => {
    const pre = guestPre({ ...engineOptions, memoryBytesMax: 4 << 20 });
    const instance = pre.instantiate();
    const err = invokeError(instance, 'grow');
    assert.equal(err.code, 'WASM_MEMORY_LIMIT');
    assert.match(err.message, /memoryBytesMax = 4194304/);
    assert.equal(instance.poisoned, true);
    // The input itself can hit the limit, through vvm_alloc.
    const err2 = invokeError(pre.instantiate(), 'echo', host, Buffer.alloc(5 << 20));
    assert.equal(err2.code, 'WASM_MEMORY_LIMIT');
    // And so can a host reply.
    const err3 = invokeError(pre.instantiate(), 'host_echo', () => Buffer.alloc(5 << 20));
    assert.equal(err3.code, 'WASM_MEMORY_LIMIT');
  }],

  ['a module that declares more memory than allowed is WASM_MEMORY_LIMIT', () => {
    const engine = new WasmEngine(engineOptions);
    assert.throws(() => engine.compile(fixture('big_memory')), { code: 'WASM_MEMORY_LIMIT' });
    // With a larger limit the same module is fine.
    const roomy = new WasmEngine({ ...engineOptions, memoryBytesMax: 128 << 20, instancesMax: 2 });
    roomy.compile(fixture('big_memory')).instantiatePre().instantiate();
  }],

  ['wasm traps are WASM_TRAP with their kind', () => {
    const pre = guestPre();
    const expected = {
      oob: /out of bounds memory access/,
      recurse: /call stack exhausted/,
      unreachable: /unreachable/,
      div0: /integer divide by zero/,
    };
    for (const [exportName, message] of Object.entries(expected)) {
      const instance = pre.instantiate();
      const err = invokeError(instance, exportName);
      assert.equal(err.code, 'WASM_TRAP', exportName);
      assert.match(err.message, message);
      assert.equal(instance.poisoned, true, exportName);
    }
  }],

  ['guest pointers outside memory are WASM_BAD_POINTER', () => {
    const pre = guestPre();
    for (const exportName of ['host_bad_ptr', 'host_bad_len', 'bad_output']) {
      const instance = pre.instantiate();
      let hostCalled = false;
      const err = invokeError(instance, exportName, () => {
        hostCalled = true;
        return null;
      });
      assert.equal(err.code, 'WASM_BAD_POINTER', exportName);
      assert.match(err.message, /outside guest memory/);
      assert.equal(hostCalled, false, `${exportName}: host not called`);
      assert.equal(instance.poisoned, true);
    }
    const badAlloc = new WasmEngine(engineOptions).compile(fixture('bad_alloc')).instantiatePre().instantiate();
    assert.equal(invokeError(badAlloc, 'echo', host, Buffer.from('abc')).code, 'WASM_BAD_POINTER');
  }],

  ['a throwing host callback is WASM_HOST_ERROR with the thrown value as cause', () => {
    const pre = guestPre();
    const thrown = new TypeError('no such document');
    const instance = pre.instantiate();
    const err = invokeError(instance, 'host_echo', () => {
      throw thrown;
    });
    assert.equal(err.code, 'WASM_HOST_ERROR');
    assert.match(err.message, /no such document/);
    assert.equal(err.cause, thrown);
    assert.equal(instance.poisoned, true);

    assert.equal(invokeError(pre.instantiate(), 'host_echo', () => { throw 42; }).cause, 42);
    const sym = Symbol('s');
    assert.equal(invokeError(pre.instantiate(), 'host_echo', () => { throw sym; }).cause, sym);
  }],

  ['issue: a thrown Error with a cyclic cause crashed the process', () => {
    const cyclic = new Error('cyclic');
    cyclic.cause = cyclic;
    const err = invokeError(guestPre().instantiate(), 'host_echo', () => {
      throw cyclic;
    });
    assert.equal(err.code, 'WASM_HOST_ERROR');
    assert.equal(err.cause, cyclic);
  }],

  ['a host reply that is not bytes is WASM_HOST_ERROR', () => {
    const pre = guestPre();
    for (const reply of ['text', 42, { length: 1 }]) {
      const err = invokeError(pre.instantiate(), 'host_echo', () => reply);
      assert.equal(err.code, 'WASM_HOST_ERROR');
      assert.match(err.message, /must return a Uint8Array/);
    }
  }],

  ['a guest error result is WASM_GUEST_ERROR and keeps the instance', () => {
    const instance = guestPre().instantiate();
    const err = invokeError(instance, 'guest_error');
    assert.equal(err.code, 'WASM_GUEST_ERROR');
    assert.equal(err.message, 'guest says no');
    assert.equal(instance.poisoned, false);
    assert.equal(instance.invoke('echo', Buffer.from('still here'), host).toString(), 'still here');
  }],

  ['garbage bytes are WASM_COMPILE (sync and async)', async () => {
    const engine = new WasmEngine(engineOptions);
    assert.throws(() => engine.compile(Buffer.from('not wasm')), { code: 'WASM_COMPILE' });
    await assert.rejects(engine.compileAsync(Buffer.from('not wasm')), { code: 'WASM_COMPILE' });
    const module = await engine.compileAsync(GUEST);
    assert.equal(module.instantiatePre().instantiate().invoke('echo', Buffer.from('a'), host).toString(), 'a');
  }],

  ['modules that break the ABI are WASM_LINK', () => {
    const engine = new WasmEngine(engineOptions);
    assert.throws(() => engine.compile(fixture('no_alloc')).instantiatePre(), {
      code: 'WASM_LINK',
      message: /vvm_alloc/,
    });
    assert.throws(() => engine.compile(fixture('foreign_import')).instantiatePre(), {
      code: 'WASM_LINK',
      message: /env::abort/,
    });
    const instance = engine.compile(GUEST).instantiatePre().instantiate();
    assert.equal(invokeError(instance, 'missing').code, 'WASM_LINK');
    assert.equal(invokeError(instance, 'not_entry').code, 'WASM_LINK');
    assert.equal(instance.poisoned, false);
  }],

  ['vvm.host outside of an entry point is refused', () => {
    const engine = new WasmEngine(engineOptions);
    const inStart = engine.compile(fixture('host_in_start')).instantiatePre();
    assert.throws(() => inStart.instantiate(), { code: 'WASM_TRAP', message: /ABI violation/ });
    const inAlloc = engine.compile(fixture('host_in_alloc')).instantiatePre().instantiate();
    let hostCalled = false;
    const err = invokeError(inAlloc, 'echo', () => {
      hostCalled = true;
      return null;
    }, Buffer.from('input'));
    assert.equal(err.code, 'WASM_TRAP');
    assert.match(err.message, /ABI violation/);
    assert.equal(hostCalled, false);
    assert.equal(inAlloc.poisoned, true);
  }],

  ['the compiled-module cache is hit on the second compile', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'vvm-wasm-cache-'));
    try {
      const engine = new WasmEngine({ ...engineOptions, cacheDir });
      const first = engine.compile(GUEST);
      assert.equal(first.fromCache, false);
      assert.equal(first.cacheError, null);
      const files = readdirSync(cacheDir);
      assert.equal(files.length, 1);
      assert.ok(files[0].startsWith(`${first.sha256}-wasmtime${engine.wasmtimeVersion}-`), files[0]);

      assert.equal(engine.compile(GUEST).fromCache, true);
      const async = await new WasmEngine({ ...engineOptions, cacheDir }).compileAsync(GUEST);
      assert.equal(async.fromCache, true);
      const cached = async.instantiatePre().instantiate();
      assert.equal(cached.invoke('host_echo', Buffer.from('c'), host).toString(), 'host:c');

      // Other engine settings compile other code: a separate entry.
      const other = new WasmEngine({ ...engineOptions, memoryBytesMax: 8 << 20, cacheDir });
      assert.equal(other.compile(GUEST).fromCache, false);
      assert.equal(readdirSync(cacheDir).length, 2);

      // A damaged entry is compiled again and replaced.
      writeFileSync(join(cacheDir, files[0]), 'damaged');
      const recompiled = engine.compile(GUEST);
      assert.equal(recompiled.fromCache, false);
      assert.equal(engine.compile(GUEST).fromCache, true);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  }],

  ['instances are limited by the pool, dispose frees a slot', () => {
    const pre = guestPre({ ...engineOptions, instancesMax: 2 });
    const a = pre.instantiate();
    const b = pre.instantiate();
    assert.throws(() => pre.instantiate(), { code: 'WASM_INSTANCE_LIMIT' });
    b.dispose();
    assert.equal(invokeError(b, 'echo').code, 'WASM_DISPOSED');
    const c = pre.instantiate();
    assert.equal(c.invoke('echo', Buffer.from('c'), host).toString(), 'c');
    assert.equal(a.memoryBytes, 65536);
  }],

  ['invoke from inside the same instance is refused', () => {
    const instance = guestPre().instantiate();
    const err = invokeError(instance, 'host_echo', () => instance.invoke('echo', Buffer.from('again'), host));
    assert.equal(err.code, 'WASM_HOST_ERROR');
    assert.equal(err.cause.code, 'WASM_REENTRANT');
  }],

  ['another instance may be invoked from a host callback', () => {
    const pre = guestPre();
    const outer = pre.instantiate();
    const inner = pre.instantiate();
    const out = outer.invoke('host_echo', Buffer.from('x'), (op, payload) => inner.invoke('host_echo', payload, host));
    assert.equal(out.toString(), 'host:x');
  }],

  ['engine options are validated', () => {
    for (const bad of [
      { deadlineMs: 0 },
      { deadlineMs: 1.5 },
      { memoryBytesMax: 3 * 2 ** 30 },
      { instancesMax: 0 },
      { stackBytesMax: 1024 },
    ]) {
      const [name, value] = Object.entries(bad)[0];
      assert.throws(() => new WasmEngine(bad), { code: 'WASM_INVALID_OPTION', message: new RegExp(`^${name} = ${value}`) });
    }
  }],
];

if (isMainThread) {
  for (const [name, run] of cases) test(name, run);

  test('the same suite inside a worker_thread', async (t) => {
    const results = await runInWorker({ suite: true });
    assert.equal(results.length, cases.length);
    for (const result of results) {
      await t.test(result.name, () => {
        if (!result.ok) assert.fail(result.error);
      });
    }
  });

  test('engines in several threads share the epoch clock', async () => {
    const spin = (deadlineMs) => {
      const err = invokeError(guestPre({ ...engineOptions, deadlineMs }).instantiate(), 'spin');
      return err.code;
    };
    const workers = [runInWorker({ spin: 30 }), runInWorker({ spin: 40 })];
    assert.equal(spin(20), 'WASM_DEADLINE');
    assert.deepEqual(await Promise.all(workers), ['WASM_DEADLINE', 'WASM_DEADLINE']);
  });

  test('terminating a worker while its guest spins', async () => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { spinForever: true } });
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    // The guest is in its loop now (or about to be): terminate cannot stop
    // wasm code, the deadline does; the worker must still exit cleanly.
    const exitCode = await worker.terminate();
    assert.equal(typeof exitCode, 'number');
  });

  test('the epoch clock ticks while guest code runs and parks otherwise', async () => {
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    const pre = guestPre({ ...engineOptions, deadlineMs: 30 });
    const started = epochTicks();
    assert.equal(invokeError(pre.instantiate(), 'spin').code, 'WASM_DEADLINE');
    assert.ok(epochTicks() - started >= 30, `a 30 ms deadline took ${epochTicks() - started} ticks`);
    // Earlier tests' guests (the terminated worker's spin) end at their deadlines.
    await sleep(300);
    const idle = epochTicks();
    await sleep(300);
    assert.equal(epochTicks(), idle, 'the clock ticked with no guest code running');
  });

  test('measurements (printed, not asserted)', (t) => {
    const engine = new WasmEngine({ instancesMax: 64 });
    const compileStarted = performance.now();
    const module = engine.compile(GUEST);
    const compileMs = performance.now() - compileStarted;
    const pre = module.instantiatePre();

    const instantiateUs = [];
    for (let i = 0; i < 2000; i++) {
      const started = performance.now();
      const instance = pre.instantiate();
      instantiateUs.push((performance.now() - started) * 1000);
      instance.dispose();
    }
    const instance = pre.instantiate();
    const input = Buffer.alloc(64, 1);
    const measure = (exportName, hostFn, inputBytes, count) => {
      for (let i = 0; i < 1000; i++) instance.invoke(exportName, inputBytes, hostFn);
      const us = [];
      for (let i = 0; i < count; i++) {
        const started = performance.now();
        instance.invoke(exportName, inputBytes, hostFn);
        us.push((performance.now() - started) * 1000);
      }
      return us;
    };
    const reply = Buffer.alloc(64, 2);
    const echoUs = measure('echo', host, input, 20_000);
    const hostEchoUs = measure('host_echo', () => reply, input, 20_000);
    const many = Buffer.alloc(4);
    many.writeUInt32LE(1000);
    const manyUs = measure('host_many', () => null, many, 200);

    t.diagnostic(`compile guest.wasm (${GUEST.length} bytes, no cache): ${compileMs.toFixed(2)} ms`);
    t.diagnostic(`instantiate from InstancePre: ${percentiles(instantiateUs)}`);
    t.diagnostic(`invoke echo, 64 B: ${percentiles(echoUs)}`);
    t.diagnostic(`invoke with one host call, 64 B each way: ${percentiles(hostEchoUs)}`);
    t.diagnostic(`invoke with 1000 host calls (null replies): ${percentiles(manyUs)}`);
  });
} else if (workerData?.suite) {
  const results = [];
  for (const [name, run] of cases) {
    try {
      await run();
      results.push({ name, ok: true });
    } catch (err) {
      results.push({ name, ok: false, error: err?.stack ?? String(err) });
    }
  }
  parentPort.postMessage(results);
} else if (workerData?.spin) {
  const err = invokeError(guestPre({ ...engineOptions, deadlineMs: workerData.spin }).instantiate(), 'spin');
  parentPort.postMessage(err.code);
} else if (workerData?.spinForever) {
  const pre = guestPre({ ...engineOptions, deadlineMs: 200 });
  parentPort.postMessage('spinning');
  for (;;) {
    const instance = pre.instantiate();
    // Always WASM_DEADLINE; the loop only waits for terminate(), which lands
    // between two calls.
    assert.equal(invokeError(instance, 'spin').code, 'WASM_DEADLINE');
    instance.dispose();
  }
}

function runInWorker(data) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    worker.once('message', (message) => {
      resolve(message);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with ${code}`));
    });
  });
}

function percentiles(samplesUs) {
  const sorted = [...samplesUs].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
  return `p50 ${at(0.5)} µs, p99 ${at(0.99)} µs, max ${at(1)} µs (n=${sorted.length})`;
}
