// Runs the dashboard's unit tests (test/*.test.ts) with Node's own test runner: esbuild compiles each file (and
// what it imports from src/) into a temporary folder, then `node --test` runs them. Exit code: node's.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tests = (await readdir(here)).filter((name) => name.endsWith(".test.ts")).map((name) => join(here, name));
const out = await mkdtemp(join(tmpdir(), "dashboard-tests-"));
try {
  await build({
    entryPoints: tests,
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "warning",
  });
  const compiled = (await readdir(out)).map((name) => join(out, name));
  const run = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...compiled], { stdio: "inherit" });
  process.exitCode = run.status ?? 1;
} finally {
  await rm(out, { recursive: true, force: true });
}
