#!/usr/bin/env node
// Tokenizing speed of the grammar on the engine VS Code uses:
//
//   node editors/vscode/test/bench.js FILE...
//
// tokenizes the files (rule stack carried from line to line, as the editor does) three times
// after one warm-up run and prints the best time, in lines and kilobytes per second.
'use strict';

const fs = require('fs');
const { loadRegistry, tokenizeText } = require('./tokenize.js');

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: node bench.js FILE...\n');
    process.exit(2);
  }
  const texts = files.map((f) => fs.readFileSync(f, 'utf8'));
  const lines = texts.reduce((n, t) => n + t.split('\n').length, 0);
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  const grammar = await (await loadRegistry()).loadGrammar('source.orch');
  let best = Infinity;
  let tokens = 0;
  for (let run = 0; run < 4; run++) {
    const start = process.hrtime.bigint();
    tokens = 0;
    for (const text of texts) {
      for (const line of tokenizeText(grammar, text)) {
        tokens += line.tokens.length;
      }
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (run > 0) {
      best = Math.min(best, ms);
    }
  }
  const perSec = (n) => Math.round(n / (best / 1000));
  console.log(
    `${lines} lines, ${(bytes / 1024).toFixed(0)} KiB, ${tokens} tokens: ${best.toFixed(0)} ms ` +
      `(${perSec(lines)} lines/s, ${(perSec(bytes) / 1024).toFixed(0)} KiB/s)`,
  );
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
