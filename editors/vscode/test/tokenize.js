#!/usr/bin/env node
// Tokenizes .orch files with the engine VS Code itself uses (vscode-textmate on
// vscode-oniguruma) and the grammar in ../syntaxes/orch.tmLanguage.json.
//
//   node tokenize.js FILE...      prints one JSON document on stdout:
//   {"files": [{"file": F, "lines": [{"line": 1, "tokens": [{"text", "start", "end", "scopes"}]}]}]}
//
// Lines are 1-based, `start`/`end` are 0-based UTF-16 columns (what VS Code uses), and `scopes`
// is the full scope stack of the token, outermost (`source.orch`) first. The rule stack is
// carried from line to line, as in the editor. Exit status 2 on a usage or load error.
'use strict';

const fs = require('fs');
const path = require('path');

const grammarPath = path.join(__dirname, '..', 'syntaxes', 'orch.tmLanguage.json');

function fail(message) {
  process.stderr.write(`tokenize.js: ${message}\n`);
  process.exit(2);
}

let vsctm;
let oniguruma;
try {
  vsctm = require('vscode-textmate');
  oniguruma = require('vscode-oniguruma');
} catch (e) {
  fail(`${e.message}\nrun \`bash scripts/install-test-deps\` (npm ci in ${__dirname})`);
}

async function loadRegistry() {
  const wasmPath = path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm');
  const wasm = fs.readFileSync(wasmPath).buffer;
  await oniguruma.loadWASM(wasm);
  const onigLib = Promise.resolve({
    createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
    createOnigString: (text) => new oniguruma.OnigString(text),
  });
  return new vsctm.Registry({
    onigLib,
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.orch') {
        return null;
      }
      const text = fs.readFileSync(grammarPath, 'utf8');
      // parseRawGrammar with a .json path uses the JSON parser VS Code uses for grammars.
      return vsctm.parseRawGrammar(text, grammarPath);
    },
  });
}

function tokenizeText(grammar, text) {
  const lines = text.split(/\r?\n/);
  // A file ending in a newline has no further line.
  if (lines.length > 1 && lines[lines.length - 1] === '') {
    lines.pop();
  }
  let ruleStack = vsctm.INITIAL;
  const out = [];
  lines.forEach((line, i) => {
    const result = grammar.tokenizeLine(line, ruleStack);
    if (result.stoppedEarly) {
      fail(`tokenizing stopped early at line ${i + 1}`);
    }
    out.push({
      line: i + 1,
      tokens: result.tokens.map((t) => ({
        text: line.substring(t.startIndex, Math.min(t.endIndex, line.length)),
        start: t.startIndex,
        end: Math.min(t.endIndex, line.length),
        scopes: t.scopes,
      })),
    });
    ruleStack = result.ruleStack;
  });
  return out;
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    fail('usage: node tokenize.js FILE...');
  }
  const registry = await loadRegistry();
  const grammar = await registry.loadGrammar('source.orch');
  if (!grammar) {
    fail(`could not load ${grammarPath}`);
  }
  const result = { files: [] };
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      fail(`${file}: ${e.message}`);
    }
    result.files.push({ file, lines: tokenizeText(grammar, text) });
  }
  process.stdout.write(JSON.stringify(result));
  process.stdout.write('\n');
}

if (require.main === module) {
  main().catch((e) => fail(e.stack || String(e)));
}

module.exports = { loadRegistry, tokenizeText };
