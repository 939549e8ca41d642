'use strict';
// Replays the shared vectors (written by the Python twin) through the JS twin: figures, summary text,
// AI prompt, errors and narrative checks must agree exactly.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const A = require('../src/analysis.js');

const VECTORS = path.join(__dirname, 'vectors');
const files = fs.readdirSync(VECTORS).filter((f) => f.endsWith('.json')).sort();
const vectors = files.map((f) => JSON.parse(fs.readFileSync(path.join(VECTORS, f), 'utf8')));

test('the vector set covers the required edge cases', () => {
  const names = new Set(vectors.map((v) => v.name));
  for (const name of ['no_comparables', 'one_comparable', 'object_missing', 'zero_area', 'absurd_price_low',
    'absurd_price_high', 'listings_without_dates', 'widening_area30', 'widening_city', 'hand_small']) {
    assert.ok(names.has(name), `missing vector ${name}`);
  }
});

for (const v of vectors) {
  test(`vector ${v.name}: ${v.description}`, () => {
    const run = () => A.analyze(v.object_code, v.objects, v.market, v.today);
    if (v.expected.error) {
      assert.throws(run, (e) => {
        assert.ok(e instanceof A.AnalysisError, 'an AnalysisError');
        assert.equal(e.kind, v.expected.error.kind);
        assert.equal(e.field, v.expected.error.field);
        assert.equal(e.message, v.expected.error.message);
        return true;
      });
      return;
    }
    const report = run();
    assert.deepStrictEqual(report, v.expected.report);
    const summary = A.renderSummary(report);
    assert.equal(summary, v.expected.summary);
    assert.ok(summary.length < A.SUMMARY_MAX_CHARS, 'fits one Telegram message');
    assert.equal(A.narrativePrompt(report), v.expected.prompt);
    for (const n of v.narratives) {
      assert.equal(A.narrativeNumbersOk(n.text, report), n.ok, n.text);
    }
  });
}

test('the same inputs give the same figures twice (no hidden state)', () => {
  const v = vectors.find((x) => x.name === 'demo_sample');
  const first = A.analyze(v.object_code, v.objects, v.market, v.today);
  const again = A.analyze(v.object_code, v.objects, v.market, v.today);
  assert.deepStrictEqual(again, first);
});

test('a valid narrative replaces the template reasoning, an invented number does not', () => {
  const v = vectors.find((x) => x.name === 'hand_small');
  const report = A.analyze(v.object_code, v.objects, v.market, v.today);
  const good = 'Цена 10 000 000 ₽ соответствует рынку: медиана 205 000 ₽/м², объект дороже 41,7% аналогов.';
  assert.ok(A.renderSummary(report, good).includes(good));
  assert.ok(!A.renderSummary(report, good).includes(report.reasoning[0]));
  const bad = 'Через год объект подорожает на 12%.';
  assert.ok(!A.renderSummary(report, bad).includes(bad));
  assert.ok(A.renderSummary(report, bad).includes(report.reasoning[0]));
});

test('parseNumber reads staff formats and rejects garbage', () => {
  assert.equal(A.parseNumber('5 000 000'), 5000000);
  assert.equal(A.parseNumber('5000000,00'), 5000000);
  assert.equal(A.parseNumber('45,5 м²'), 45.5);
  assert.equal(A.parseNumber('5.000.000,50'), 5000000.5);
  assert.equal(A.parseNumber('1,234,567.8'), 1234567.8);
  assert.equal(A.parseNumber('9 100 000 руб.'), 9100000);
  assert.equal(A.parseNumber(''), null);
  assert.equal(A.parseNumber('договорная'), null);
  assert.equal(A.parseNumber('12abc34'), null);
});

test('rounding is half away from zero and never negative zero', () => {
  assert.equal(A.roundHalfAway(962.5), 963);
  assert.equal(A.roundHalfAway(-962.5), -963);
  assert.equal(A.round1(-4.7619), -4.8);
  assert.ok(Object.is(A.round1(-0.01), 0));
});
