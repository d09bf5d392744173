// Builds the dashboard into ../build/dashboard (or the folder given as the first argument): one minified
// JavaScript bundle and one stylesheet with content hashes in their names, and index.html pointing at them.
// Prints the page weight: the bytes of HTML, JavaScript and CSS a browser fetches on first load.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { mkdir, readFile, rm, writeFile, readdir, stat } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "..", "build", "dashboard"));

await rm(out, { recursive: true, force: true });
await mkdir(join(out, "assets"), { recursive: true });

// The bundled packages' licences travel with the bundle (uPlot's dist files carry no notice of their own).
const notices = [];
for (const name of Object.keys(JSON.parse(await readFile(join(here, "package.json"), "utf8")).dependencies)) {
  const meta = JSON.parse(await readFile(join(here, "node_modules", name, "package.json"), "utf8"));
  const licence = (await readFile(join(here, "node_modules", name, "LICENSE"), "utf8")).trim();
  notices.push(`${name} ${meta.version}\n\n${licence}`);
}
const banner = `/*! The emotion-stream dashboard. Bundled third-party code and its licences:\n\n${notices
  .join("\n\n---\n\n")
  .replaceAll("*/", "* /")}\n*/`;

const result = await build({
  entryPoints: { app: join(here, "src", "main.ts"), styles: join(here, "src", "styles.css") },
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox115", "safari16"],
  sourcemap: false,
  legalComments: "eof",
  banner: { js: banner, css: banner },
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((path) => resolve(path));
const script = outputs.find((path) => path.endsWith(".js"));
const styles = outputs.find((path) => path.endsWith(".css"));
if (!script || !styles) {
  throw new Error(`esbuild produced no script or stylesheet: ${outputs.join(", ")}`);
}
const html = (await readFile(join(here, "src", "index.html"), "utf8"))
  .replace("%JS%", relative(out, script))
  .replace("%CSS%", relative(out, styles));
await writeFile(join(out, "index.html"), html);

let raw = 0;
let gzipped = 0;
const lines = [];
for (const name of ["index.html", ...(await readdir(join(out, "assets"))).map((f) => `assets/${f}`)]) {
  const bytes = await readFile(join(out, name));
  const size = (await stat(join(out, name))).size;
  const gz = gzipSync(bytes, { level: 9 }).length;
  raw += size;
  gzipped += gz;
  lines.push(`  ${name.padEnd(32)} ${String(size).padStart(8)} B  (${gz} B gzipped)`);
}
console.log(`dashboard built in ${relative(process.cwd(), out) || "."}:`);
console.log(lines.join("\n"));
console.log(`page weight (HTML + JS + CSS on first load): ${raw} B, ${gzipped} B gzipped`);
