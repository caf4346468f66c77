#!/usr/bin/env python3
"""Builds orch.tmLanguage.json, the TextMate grammar of orch (scope `source.orch`), beside this file.

    python3 editors/vscode/syntaxes/build.py           writes orch.tmLanguage.json
    python3 editors/vscode/syntaxes/build.py --check   exits 1 when the JSON is not what this builds

The regular expressions are written here once, readable, and put together into the JSON that
editors load; edit this file, run it, and commit both (tests/editors.rs checks they agree).
Regular expressions are Oniguruma's (what VS Code runs); each line is matched on its own.

Layout: a declaration is a begin/end region from its keyword to the end of its body (`(?<=})`);
inside, parameter lists, bodies, flows, types and expressions are nested regions. Contextual
keywords are matched only in the shape that starts their construct (`retry 3`, `timeout 30s`,
`poll every`, `graph {`, `x after y`, `fixed name:`, `when state`, `input step`), so the same word
used as a name stays a name. Every region also ends before a declaration keyword that starts a
line, so a bracket left open while typing does not swallow the rest of the file.
"""
import json
import os
import sys

ID = r'[A-Za-z_][A-Za-z0-9_]*'
PATH = rf'(?:{ID}\s*\.\s*)*{ID}'
DUR = r'\d+(?:ms|s|m|h|d)(?![A-Za-z0-9_])'
DECLS = r'(?:use|config|secret|type|enum|block|product|lifecycle|step|workflow|environment)'
# A declaration keyword at the start of a line (not a record key `type: ...`): every region ends
# there, so that a bracket left open while typing does not swallow the declarations after it.
DECL_START = rf'(?=^\s*(?:{DECLS}\b(?!\s*:)|input\s+step\b))'
RESERVED_NOT_NAMES = r'(?:use|config|secret|type|enum|block|product|lifecycle|step|workflow|environment|let|if|else|for|in|as|with|true|false|none|and|or|not)'
# A reserved word is a keyword unless it is a field name after `.` or a key before `:`.
def kw(words):
    return rf'\b(?<!\.)(?:{words})\b(?!\s*:)'

def region(begin, end, patterns, name=None, begin_caps=None, end_caps=None, content=None):
    r = {'begin': begin, 'end': end}
    if name: r['name'] = name
    if content: r['contentName'] = content
    if begin_caps: r['beginCaptures'] = caps(begin_caps)
    if end_caps: r['endCaptures'] = caps(end_caps)
    r['patterns'] = [{'include': p} if isinstance(p, str) else p for p in patterns]
    return r

def caps(d):
    out = {}
    for k, v in d.items():
        if isinstance(v, str):
            out[str(k)] = {'name': v}
        else:
            out[str(k)] = v
    return out

def match(regex, name=None, captures=None):
    r = {'match': regex}
    if name: r['name'] = name
    if captures: r['captures'] = caps(captures)
    return r

def inc(*names):
    return [{'include': n} for n in names]

def body_end(extra=''):
    return rf'(?<=\}}){extra}|{DECL_START}'

repo = {}

repo['comments'] = {'patterns': [
    match(r'(///)(?!/).*', 'comment.line.documentation.orch', {1: 'punctuation.definition.comment.orch'}),
    match(r'(//).*', 'comment.line.double-slash.orch', {1: 'punctuation.definition.comment.orch'}),
]}

# ---------------------------------------------------------------------------------------------
# Declarations

repo['use'] = {'patterns': [
    match(rf'\b(use)\s+(std)\s*(\.)\s*({ID})',
          'meta.import.orch',
          {1: 'keyword.control.import.orch', 2: 'keyword.other.std.orch',
           3: 'punctuation.accessor.orch', 4: 'entity.name.namespace.orch'}),
    match(rf'\b(use)\s+("(?:[^"\\]|\\.)*")\s*(as)\s+({ID})',
          'meta.import.orch',
          {1: 'keyword.control.import.orch', 2: {'patterns': [{'include': '#string'}]},
           3: 'keyword.control.as.orch', 4: 'entity.name.namespace.orch'}),
]}

repo['config'] = region(rf'\b(config)\s+({ID})', r'(?==)|$|(?=//)',
    ['#comments', match(r':', 'punctuation.separator.type.orch'), '#type'],
    name='meta.config.orch',
    begin_caps={1: 'storage.type.config.orch', 2: 'variable.other.constant.config.orch'})

repo['secret'] = match(rf'\b(secret)\s+({ID})', 'meta.secret.orch',
    {1: 'storage.type.secret.orch', 2: 'variable.other.constant.secret.orch'})

repo['type-decl'] = region(rf'\b(type)\s+({ID})', r'$|(?=//)',
    ['#comments', match(r'=', 'keyword.operator.assignment.orch'), '#type'],
    name='meta.type.alias.orch',
    begin_caps={1: 'storage.type.type.orch', 2: 'entity.name.type.alias.orch'})

def braces(name, patterns):
    return region(r'\{', r'\}', patterns, name=name,
                  begin_caps={0: 'punctuation.section.braces.begin.orch'},
                  end_caps={0: 'punctuation.section.braces.end.orch'})

repo['enum'] = region(rf'\b(enum)\s+({ID})', body_end(),
    ['#comments', braces('meta.enum.body.orch', [
        '#comments',
        match(rf'\b{ID}\b', 'variable.other.enummember.orch'),
        '#separators'])],
    name='meta.enum.orch',
    begin_caps={1: 'storage.type.enum.orch', 2: 'entity.name.type.enum.orch'})

repo['lifecycle'] = region(rf'\b(lifecycle)\s+({ID})', body_end(),
    ['#comments', braces('meta.lifecycle.body.orch', [
        '#comments',
        match(r'->', 'keyword.operator.arrow.transition.orch'),
        match(rf'\b{ID}\b', 'constant.other.state.orch'),
        '#separators'])],
    name='meta.lifecycle.orch',
    begin_caps={1: 'storage.type.lifecycle.orch', 2: 'entity.name.type.lifecycle.orch'})

repo['block'] = region(rf'\b(block)\s+({ID})', body_end(),
    ['#comments', braces('meta.block.body.orch', ['#field-list'])],
    name='meta.block.orch',
    begin_caps={1: 'storage.type.block.orch', 2: 'entity.name.type.block.orch'})

repo['product'] = region(rf'\b(product)\s+({ID})', body_end(),
    ['#comments',
     match(rf'\b(lifecycle)\s+({PATH})\b',
           captures={1: 'storage.type.lifecycle.orch', 2: {'patterns': [{'include': '#type-path'}]}}),
     braces('meta.product.body.orch', ['#field-list'])],
    name='meta.product.orch',
    begin_caps={1: 'storage.type.product.orch', 2: 'entity.name.type.product.orch'})

repo['environment'] = region(rf'\b(environment)\s+({ID})', body_end(),
    ['#comments', braces('meta.environment.body.orch', [
        '#comments',
        match(rf'\b({ID})\s*(?==(?!=))', captures={1: 'variable.other.constant.config.orch'}),
        '#expression'])],
    name='meta.environment.orch',
    begin_caps={1: 'storage.type.environment.orch', 2: 'entity.name.section.environment.orch'})

# Fields of blocks, products and record types: `name: TYPE [when s | t] [= default]`.
repo['field-list'] = {'patterns': [
    {'include': '#comments'},
    match(rf'\b(fixed)\b(?=\s+{ID}\s*:)', 'keyword.other.fixed.orch'),
    region(rf'\b({ID})\s*(:)', r'(?=[,;}]|//)|$', [
        '#comments',
        region(rf'\b(when)\b(?=\s+{ID})', r'(?=[,;}=]|//)|$', [
            match(r'\|', 'punctuation.separator.state.orch'),
            match(rf'\b{ID}\b', 'constant.other.state.orch')],
            name='meta.when.orch', begin_caps={1: 'keyword.other.when.orch'}),
        region(r'(=)', r'(?=[,;}]|//)|$', ['#expression'],
            begin_caps={1: 'keyword.operator.assignment.orch'}),
        '#type'],
        name='meta.field.orch',
        begin_caps={1: 'variable.other.property.orch', 2: 'punctuation.separator.type.orch'}),
    {'include': '#separators'},
]}

# ---------------------------------------------------------------------------------------------
# Steps and workflows

def param_list(begin, begin_caps, name, item_scope):
    return region(begin, r'\)', [
        '#comments',
        region(rf'\b({ID})\s*(:)', r'(?=[,)])', [
            '#comments',
            region(r'(=)', r'(?=[,)])', ['#expression'],
                   begin_caps={1: 'keyword.operator.assignment.orch'}),
            '#type'],
            begin_caps={1: item_scope, 2: 'punctuation.separator.type.orch'}),
        '#separators'],
        name=name, begin_caps=begin_caps,
        end_caps={0: 'punctuation.section.parens.end.orch'})

# `-> (out: T, ...)`, the list possibly on the next line: from `->` to the list's `)`.
repo['outputs'] = region(r'(->)(?=\s*(?:\(|$|//))', r'(?<=\))', [
    '#comments',
    param_list(r'\(', {0: 'punctuation.section.parens.begin.orch'}, None, 'variable.parameter.output.orch')],
    name='meta.outputs.orch', begin_caps={1: 'keyword.operator.arrow.orch'})
repo['params'] = param_list(r'\(', {0: 'punctuation.section.parens.begin.orch'},
    'meta.parameters.orch', 'variable.parameter.orch')

repo['step'] = region(rf'\b(?:(input)\s+)?(step)\s+({ID})', rf'(?<=[}}"])|{DECL_START}', [
    '#comments',
    '#outputs',
    '#params',
    match(r'->', 'keyword.operator.arrow.orch'),
    match(rf'\b(retry)\b(?=\s+\d)', 'keyword.other.retry.orch'),
    match(rf'\b(backoff)\b(?=\s+\d)', 'keyword.other.backoff.orch'),
    match(rf'\b(factor)\b(?=\s+\d)', 'keyword.other.factor.orch'),
    match(rf'\b(timeout)\b(?=\s+\d)', 'keyword.other.timeout.orch'),
    match(rf'\b(compensate)\s+({PATH})\b',
          captures={1: 'keyword.other.compensate.orch',
                    2: {'patterns': [{'include': '#function-path'}]}}),
    region(r'\b(poll)\s+(every)\b', rf'(?=\{{)|(?=\bcompensate\s+[A-Za-z_])|{DECL_START}', [
        '#comments',
        match(r'\b(until)\b(?!\s*[:=,)])', 'keyword.other.until.orch'),
        match(r'\b(within)\b(?=\s+\d)', 'keyword.other.within.orch'),
        '#expression'],
        name='meta.poll.orch',
        begin_caps={1: 'keyword.other.poll.orch', 2: 'keyword.other.every.orch'}),
    match(r'\.\.', 'keyword.operator.range.orch'),
    '#numbers',
    region(r'\{', r'\}', ['#block-content'], name='meta.step.body.orch',
           begin_caps={0: 'punctuation.section.block.begin.orch'},
           end_caps={0: 'punctuation.section.block.end.orch'}),
    '#string'],
    name='meta.step.orch',
    begin_caps={1: 'keyword.other.input.orch', 2: 'storage.type.step.orch',
                3: 'entity.name.function.step.orch'})

repo['workflow'] = region(rf'\b(workflow)\s+({ID})', body_end(), [
    '#comments',
    '#outputs',
    '#params',
    match(r'->', 'keyword.operator.arrow.orch'),
    region(r'\{', r'\}', ['#flow'], name='meta.workflow.body.orch',
           begin_caps={0: 'punctuation.section.block.begin.orch'},
           end_caps={0: 'punctuation.section.block.end.orch'})],
    name='meta.workflow.orch',
    begin_caps={1: 'storage.type.workflow.orch', 2: 'entity.name.function.workflow.orch'})

NOT_KW = rf'(?!{RESERVED_NOT_NAMES}\b)'

repo['flow'] = {'patterns': [
    {'include': '#comments'},
    match(r'>>', 'keyword.operator.sequence.orch'),
    match(r'&', 'keyword.operator.parallel.orch'),
    region(r'\b(if)\b', r'(?=\{)', ['#expression'], name='meta.flow.if.orch',
           begin_caps={1: 'keyword.control.conditional.orch'}),
    match(kw('else'), 'keyword.control.conditional.orch'),
    region(rf'\b(for)\s+({ID})\s+(in)\b', r'(?=\{)', [
        match(r'\b(limit)\b(?=\s+\d)', 'keyword.other.limit.orch'),
        '#expression'],
        name='meta.flow.for.orch',
        begin_caps={1: 'keyword.control.loop.orch', 2: 'entity.name.variable.loop.orch',
                    3: 'keyword.control.loop.in.orch'}),
    region(r'\b(graph)\s*(\{)', r'\}', [
        '#comments',
        region(r'\b(after)\s*(\()', r'\)', [
            '#comments', match(rf'\b{ID}\b', 'entity.name.function.orch'), '#separators'],
            begin_caps={1: 'keyword.other.after.orch', 2: 'punctuation.section.parens.begin.orch'},
            end_caps={0: 'punctuation.section.parens.end.orch'}),
        match(rf'\b(after)\s+({ID})\b',
              captures={1: 'keyword.other.after.orch', 2: 'entity.name.function.orch'}),
        '#flow-call',
        '#separators'],
        name='meta.flow.graph.orch',
        begin_caps={1: 'keyword.other.graph.orch', 2: 'punctuation.section.braces.begin.orch'},
        end_caps={0: 'punctuation.section.braces.end.orch'}),
    region(r'\{', r'\}', ['#flow'], name='meta.flow.group.orch',
           begin_caps={0: 'punctuation.section.braces.begin.orch'},
           end_caps={0: 'punctuation.section.braces.end.orch'}),
    {'include': '#flow-call'},
    region(r'\(', r'\)', ['#flow'], name='meta.flow.group.orch',
           begin_caps={0: 'punctuation.section.parens.begin.orch'},
           end_caps={0: 'punctuation.section.parens.end.orch'}),
    {'include': '#separators'},
]}

repo['flow-call'] = {'patterns': [
    region(r'\b(as)\s*(\()', r'\)', [
        '#comments',
        match(rf'\b({ID})\s*(:)\s*({ID})\b',
              captures={1: 'variable.other.orch', 2: 'punctuation.separator.key-value.orch',
                        3: 'variable.parameter.output.orch'}),
        '#separators'],
        name='meta.flow.renames.orch',
        begin_caps={1: 'keyword.control.as.orch', 2: 'punctuation.section.parens.begin.orch'},
        end_caps={0: 'punctuation.section.parens.end.orch'}),
    region(rf'\b{NOT_KW}({PATH})\s*(\()', r'\)', [
        '#comments',
        match(rf'\b({ID})\s*(:)(?!:)',
              captures={1: 'variable.parameter.orch', 2: 'punctuation.separator.key-value.orch'}),
        '#expression'],
        name='meta.flow.call.orch',
        begin_caps={1: {'patterns': [{'include': '#function-path'}]},
                    2: 'punctuation.section.parens.begin.orch'},
        end_caps={0: 'punctuation.section.parens.end.orch'}),
    match(rf'\b{NOT_KW}({PATH})\b', 'meta.flow.call.orch',
          {1: {'patterns': [{'include': '#function-path'}]}}),
]}

repo['function-path'] = {'patterns': [
    match(rf'\b({ID})\s*(\.)', captures={1: 'entity.name.namespace.orch', 2: 'punctuation.accessor.orch'}),
    match(rf'\b{ID}\b', 'entity.name.function.orch'),
]}

# ---------------------------------------------------------------------------------------------
# Types

BUILTIN_TYPES = r'(?:Str|Int|Float|Bool|Duration|Json|Secret)'
repo['type'] = {'patterns': [
    {'include': '#comments'},
    region(r'\[', r'\]', ['#type', match(r':', 'punctuation.separator.key-value.orch'), '#separators'],
           name='meta.type.list.orch',
           begin_caps={0: 'punctuation.definition.type.list.begin.orch'},
           end_caps={0: 'punctuation.definition.type.list.end.orch'}),
    region(r'\{', r'\}', ['#field-list'], name='meta.type.record.orch',
           begin_caps={0: 'punctuation.definition.type.record.begin.orch'},
           end_caps={0: 'punctuation.definition.type.record.end.orch'}),
    match(rf'\b((?:{ID}\s*\.\s*)*)({ID})\s*((@)\s*({ID}))',
          'meta.type.stateful.orch',
          {1: {'patterns': [{'include': '#type-path'}]},
           2: {'patterns': [{'include': '#type-path'}]},
           3: 'meta.state.orch', 4: 'keyword.operator.state.orch', 5: 'constant.other.state.orch'}),
    {'include': '#type-path'},
    match(r'\?(?!\?)', 'keyword.operator.optional.orch'),
]}

repo['type-path'] = {'patterns': [
    match(rf'\b{BUILTIN_TYPES}\b', 'support.type.builtin.orch'),
    match(rf'\b({ID})\s*(\.)', captures={1: 'entity.name.namespace.orch', 2: 'punctuation.accessor.orch'}),
    match(rf'\b{ID}\b', 'entity.name.type.orch'),
]}

# ---------------------------------------------------------------------------------------------
# Statements and expressions

repo['block-content'] = {'patterns': [
    {'include': '#comments'},
    region(rf'\b(let)\s+({ID})', r'(?==)|(?=[;}]|//)|$', [
        match(r':', 'punctuation.separator.type.orch'), '#type'],
        name='meta.let.orch',
        begin_caps={1: 'storage.type.let.orch', 2: 'entity.name.variable.orch'}),
    match(rf'\b({ID})\s*(:)(?!:)',
          captures={1: 'variable.other.property.orch', 2: 'punctuation.separator.key-value.orch'}),
    {'include': '#expression'},
]}

BUILTIN_FUNCS = (r'(?:exec|sleep|now|uuid|log|fail|idempotency_key|len|upper|lower|trim|split|join|'
                 r'replace|contains|starts_with|ends_with|range|keys|str|int|float|json_parse|'
                 r'to_json|env|transition)')

repo['expression'] = {'patterns': [
    {'include': '#comments'},
    {'include': '#string'},
    region(r'\b(as)\s*(\[)', r'\]', ['#type', match(r':', 'punctuation.separator.key-value.orch'), '#separators'],
           name='meta.type.list.orch',
           begin_caps={1: 'keyword.operator.expression.as.orch', 2: 'punctuation.definition.type.list.begin.orch'},
           end_caps={0: 'punctuation.definition.type.list.end.orch'}),
    region(r'\b(as)\s*(\{)', r'\}', ['#field-list'], name='meta.type.record.orch',
           begin_caps={1: 'keyword.operator.expression.as.orch', 2: 'punctuation.definition.type.record.begin.orch'},
           end_caps={0: 'punctuation.definition.type.record.end.orch'}),
    match(rf'\b(as)\s+({PATH}(?:\s*@\s*{ID})?(?:\s*\?(?!\?))*)',
          captures={1: 'keyword.operator.expression.as.orch', 2: {'patterns': [{'include': '#type'}]}}),
    region(r'\b(with)\s*(\{)', r'\}', [
        '#comments',
        match(rf'\b({ID}(?:\s*\.\s*{ID})*)\s*(:)(?!:)',
              captures={1: {'patterns': [match(r'\.', 'punctuation.accessor.orch'),
                                         match(rf'\b{ID}\b', 'variable.other.property.orch')]},
                        2: 'punctuation.separator.key-value.orch'}),
        '#expression'],
        name='meta.with.orch',
        begin_caps={1: 'keyword.operator.expression.with.orch', 2: 'punctuation.section.braces.begin.orch'},
        end_caps={0: 'punctuation.section.braces.end.orch'}),
    match(rf'\b(for)\s+({ID})\s+(in)\b',
          captures={1: 'keyword.control.loop.orch', 2: 'entity.name.variable.loop.orch',
                    3: 'keyword.control.loop.in.orch'}),
    {'include': '#keywords'},
    match(r'\b(http)\s*(\.)\s*(get|post|put|patch|delete)\b(?=\s*\()',
          'meta.function-call.orch',
          {1: 'support.function.builtin.orch', 2: 'punctuation.accessor.orch', 3: 'support.function.builtin.orch'}),
    match(rf'\b{BUILTIN_FUNCS}\b(?=\s*\()', 'support.function.builtin.orch'),
    match(r'(\.)\s*(new)\b(?=\s*\()',
          captures={1: 'punctuation.accessor.orch', 2: 'support.function.constructor.orch'}),
    match(rf'\b(run)\b(?=\s*\.)', 'variable.language.run.orch'),
    match(rf'(\.)\s*({ID})\b',
          captures={1: 'punctuation.accessor.orch', 2: 'variable.other.property.orch'}),
    match(rf'\b([A-Z][A-Za-z0-9_]*)\b(?=\s*\.\s*[A-Za-z_])', 'entity.name.type.orch'),
    match(rf'\b({ID})\b(?=\s*\()', 'entity.name.function.orch'),
    {'include': '#numbers'},
    {'include': '#operators'},
    region(r'\{', r'\}', ['#block-content'], name='meta.braces.orch',
           begin_caps={0: 'punctuation.section.braces.begin.orch'},
           end_caps={0: 'punctuation.section.braces.end.orch'}),
    region(r'\(', r'\)', [
        '#comments',
        match(rf'\b({ID})\s*(:)(?!:)',
              captures={1: 'variable.parameter.orch', 2: 'punctuation.separator.key-value.orch'}),
        '#expression'],
        name='meta.parens.orch',
        begin_caps={0: 'punctuation.section.parens.begin.orch'},
        end_caps={0: 'punctuation.section.parens.end.orch'}),
    region(r'\[', r'\]', ['#expression'], name='meta.brackets.orch',
           begin_caps={0: 'punctuation.section.brackets.begin.orch'},
           end_caps={0: 'punctuation.section.brackets.end.orch'}),
    {'include': '#separators'},
    match(rf'\b{ID}\b', 'variable.other.orch'),
]}

repo['keywords'] = {'patterns': [
    match(kw('if|else'), 'keyword.control.conditional.orch'),
    match(kw('for'), 'keyword.control.loop.orch'),
    match(kw('in'), 'keyword.control.loop.in.orch'),
    match(kw('let'), 'storage.type.let.orch'),
    match(kw('as'), 'keyword.operator.expression.as.orch'),
    match(kw('with'), 'keyword.operator.expression.with.orch'),
    match(kw('and|or|not'), 'keyword.operator.logical.orch'),
    match(kw('true|false'), 'constant.language.boolean.orch'),
    match(kw('none'), 'constant.language.none.orch'),
    match(kw('use'), 'keyword.control.import.orch'),
    match(kw('config|secret|type|enum|block|product|lifecycle|step|workflow|environment'), 'storage.type.orch'),
]}

repo['numbers'] = {'patterns': [
    match(rf'\b{DUR}', 'constant.numeric.duration.orch'),
    match(r'\b\d+\.\d+(?![A-Za-z0-9_])', 'constant.numeric.float.orch'),
    match(r'\b\d+(?![A-Za-z0-9_])', 'constant.numeric.integer.orch'),
]}

repo['operators'] = {'patterns': [
    match(r'\?\?', 'keyword.operator.coalescing.orch'),
    match(r'->', 'keyword.operator.arrow.orch'),
    match(r'>>', 'keyword.operator.sequence.orch'),
    match(r'==|!=|<=|>=|<|>', 'keyword.operator.comparison.orch'),
    match(r'=', 'keyword.operator.assignment.orch'),
    match(r'&', 'keyword.operator.parallel.orch'),
    match(r'\.\.', 'keyword.operator.range.orch'),
    match(r'[-+*/%]', 'keyword.operator.arithmetic.orch'),
    match(r'\?', 'keyword.operator.optional.orch'),
    match(r'@', 'keyword.operator.state.orch'),
    match(r'\|', 'punctuation.separator.state.orch'),
    match(r':', 'punctuation.separator.key-value.orch'),
]}

repo['separators'] = {'patterns': [
    match(r',', 'punctuation.separator.comma.orch'),
    match(r';', 'punctuation.terminator.statement.orch'),
]}

repo['string'] = region(r'"', r'"|$', [
    match(r'\\[nt\\"$]', 'constant.character.escape.orch'),
    match(r'\\.?', 'invalid.illegal.escape.orch'),
    region(r'\$\{', r'\}', ['#expression'],
           name='meta.interpolation.orch', content='meta.embedded.line.orch source.orch.embedded',
           begin_caps={0: 'punctuation.section.interpolation.begin.orch'},
           end_caps={0: 'punctuation.section.interpolation.end.orch'})],
    name='string.quoted.double.orch',
    begin_caps={0: 'punctuation.definition.string.begin.orch'},
    end_caps={0: 'punctuation.definition.string.end.orch'})

grammar = {
    '$schema': 'https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json',
    'name': 'orch',
    'scopeName': 'source.orch',
    'fileTypes': ['orch'],
    'patterns': inc('#comments', '#use', '#config', '#secret', '#type-decl', '#enum', '#lifecycle',
                    '#block', '#product', '#step', '#workflow', '#environment', '#expression'),
    'repository': repo,
}

def close_at_declarations(v):
    if isinstance(v, dict):
        if 'begin' in v and 'end' in v and DECL_START not in v['end']:
            v['end'] = v['end'] + '|' + DECL_START
        for x in v.values():
            close_at_declarations(x)
    elif isinstance(v, list):
        for x in v:
            close_at_declarations(x)

close_at_declarations(repo)

text = json.dumps(grammar, indent=2) + '\n'
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'orch.tmLanguage.json')
if sys.argv[1:] == ['--check']:
    with open(target, encoding='utf-8') as f:
        if f.read() != text:
            sys.exit(f'{target} is not what build.py makes: run python3 {__file__}')
elif sys.argv[1:]:
    sys.exit('usage: build.py [--check]')
else:
    with open(target, 'w', encoding='utf-8') as f:
        f.write(text)

