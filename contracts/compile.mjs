// Compiles every .sol under contracts/src/ with solc-js (npm `solc`, pinned in package.json) and writes
// contracts/artifacts/<ContractName>.json: abi, bytecode, deployedBytecode, compiler version, settings and a
// hash of the sources. The artifacts are committed so Python never needs node at run time;
// tests/chain/test_artifacts.py recompiles and fails when they are stale.
//
//   node contracts/compile.mjs            write the artifacts
//   node contracts/compile.mjs --check    exit 1 (and name the stale files) when they differ
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "contracts", "src");
const OUT = join(ROOT, "contracts", "artifacts");
const NODE_MODULES = join(ROOT, "node_modules");

// Fixed, so the same sources always give the same bytecode. cancun runs on anvil and on every live
// EVM chain the studio targets; osaka is not yet everywhere.
const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  evmVersion: "cancun",
  viaIR: false,
  metadata: { bytecodeHash: "none" },
  outputSelection: { "*": { "": ["ast"], "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function solFiles(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...solFiles(path));
    else if (entry.name.endsWith(".sol")) found.push(path);
  }
  return found.sort();
}

function sourceName(path) {
  return relative(ROOT, path).split(sep).join("/");
}

const sources = {};
for (const path of solFiles(SRC)) sources[sourceName(path)] = { content: readFileSync(path, "utf8") };

// Every file the compiler pulled in (ours and OpenZeppelin's), for the sources hash.
const imported = {};

function findImports(importPath) {
  const candidates = [join(NODE_MODULES, importPath), join(ROOT, importPath)];
  for (const candidate of candidates) {
    if (existsSync(candidate)) {
      const content = readFileSync(candidate, "utf8");
      imported[importPath] = content;
      return { contents: content };
    }
  }
  return { error: `import not found: ${importPath} (looked in node_modules/ and the repository; run npm ci)` };
}

const input = { language: "Solidity", sources, settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const message of output.errors || []) {
  if (message.severity !== "error" && !/SPDX/.test(message.message)) console.error(message.formattedMessage);
}
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}

const allSources = { ...imported };
for (const [name, { content }] of Object.entries(sources)) allSources[name] = content;

// The files one source depends on (itself and everything it imports, transitively), from the AST.
function dependencies(file, seen = new Set()) {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const node of output.sources[file]?.ast?.nodes || []) {
    if (node.nodeType === "ImportDirective") dependencies(node.absolutePath, seen);
  }
  return seen;
}

// Per contract, so that adding an unrelated test contract does not make every artifact stale.
function sourcesHash(file) {
  const hash = createHash("sha256");
  for (const name of [...dependencies(file)].sort()) hash.update(name + "\0" + allSources[name] + "\0");
  return "sha256:" + hash.digest("hex");
}

const artifacts = {};
for (const [file, contracts] of Object.entries(output.contracts)) {
  if (!file.startsWith("contracts/src/")) continue;
  for (const [name, out] of Object.entries(contracts)) {
    if (!out.evm.bytecode.object) continue; // interfaces and abstract contracts have no bytecode
    const artifact = {
      contractName: name,
      sourceName: file,
      compiler: { name: "solc-js", version: solc.version() },
      settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR },
      sourcesHash: sourcesHash(file),
      abi: out.abi,
      bytecode: "0x" + out.evm.bytecode.object,
      deployedBytecode: "0x" + out.evm.deployedBytecode.object,
    };
    artifacts[name] = artifact;
  }
}

const check = process.argv.includes("--check");
const stale = [];
const wanted = new Set(Object.keys(artifacts).map((name) => `${name}.json`));
if (!check) mkdirSync(OUT, { recursive: true });
for (const [name, artifact] of Object.entries(artifacts)) {
  const path = join(OUT, `${name}.json`);
  const text = JSON.stringify(artifact, null, 2) + "\n";
  const current = existsSync(path) ? readFileSync(path, "utf8") : null;
  if (current === text) continue;
  stale.push(relative(ROOT, path));
  if (!check) writeFileSync(path, text);
}
for (const existing of existsSync(OUT) ? readdirSync(OUT) : []) {
  if (existing.endsWith(".json") && !wanted.has(existing)) {
    stale.push(relative(ROOT, join(OUT, existing)));
    if (!check) rmSync(join(OUT, existing));
  }
}
if (check) {
  if (stale.length) {
    console.error(`stale contract artifacts: ${stale.join(", ")}; run \`make compile\` and commit them`);
    process.exit(1);
  }
  console.log(`contract artifacts up to date (${Object.keys(artifacts).length})`);
} else {
  console.log(`compiled ${Object.keys(artifacts).join(", ")} into ${relative(ROOT, OUT)}/ (${stale.length} changed)`);
}
