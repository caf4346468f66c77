" Vim syntax file
" Language:    orch (.orch), a typed language for infrastructure workflows
" Maintainer:  the orch project (editors/README.md)
"
" Reserved words are keywords except as a field name after `.` or a key before `:`. The
" contextual keywords (fixed when input graph after limit retry backoff factor timeout
" compensate poll every until within) are keywords only where they start their construct, and
" plain names elsewhere (a parameter may be called `timeout`).

if exists('b:current_syntax')
  finish
endif
let s:cpo_save = &cpo
set cpo&vim

syn case match
syn iskeyword @,48-57,_

" Names and types (defined first: later matches win at the same position).
syn match orchIdentifier /\<\h\w*\>/ contains=NONE
syn match orchType /\<\u\w*\>/
syn keyword orchBuiltinType Str Int Float Bool Duration Json Secret
syn match orchState /@\s*\h\w*/
syn match orchFunctionName /\%(\<\%(step\|workflow\)\s\+\)\@<=\h\w*/
syn match orchTypeName /\%(\<\%(type\|enum\|block\|product\|lifecycle\)\s\+\)\@<=\h\w*/
syn match orchBuiltin /\<\%(exec\|sleep\|now\|uuid\|log\|fail\|idempotency_key\|len\|upper\|lower\|trim\|split\|join\|replace\|contains\|starts_with\|ends_with\|range\|keys\|str\|int\|float\|json_parse\|to_json\|env\|transition\)\ze\s*(/
syn match orchBuiltin /\<http\s*\.\s*\%(get\|post\|put\|patch\|delete\)\>\ze\s*(/
syn match orchProperty /\%(\.\s*\)\@<=\h\w*/
" `module.Type`: a capitalized name after a dot is a type.
syn match orchType /\%(\.\s*\)\@<=\u\w*/
syn match orchKey /\<\h\w*\ze\s*:\%(:\)\@!/

" Operators.
syn match orchOperator /->\|>>\|&\|??\|==\|!=\|<=\|>=\|[<>+*%=?|]\|-\|\.\./
syn match orchOperator +/\%([/]\)\@!+

" Reserved words: not after `.`, not before `:`.
syn match orchImport /\%(\.\s*\)\@<!\<\%(use\)\>\%(\s*:\)\@!/
syn match orchImport /\%(\<use\s\+\)\@<=std\>/
syn match orchDeclaration /\%(\.\s*\)\@<!\<\%(config\|secret\|type\|enum\|block\|product\|lifecycle\|step\|workflow\|environment\)\>\%(\s*:\)\@!/
syn match orchStatement /\%(\.\s*\)\@<!\<let\>\%(\s*:\)\@!/
syn match orchConditional /\%(\.\s*\)\@<!\<\%(if\|else\)\>\%(\s*:\)\@!/
syn match orchRepeat /\%(\.\s*\)\@<!\<\%(for\|in\)\>\%(\s*:\)\@!/
syn match orchOperatorWord /\%(\.\s*\)\@<!\<\%(and\|or\|not\|as\|with\)\>\%(\s*:\)\@!/
syn match orchBoolean /\%(\.\s*\)\@<!\<\%(true\|false\)\>\%(\s*:\)\@!/
syn match orchNone /\%(\.\s*\)\@<!\<none\>\%(\s*:\)\@!/

" Contextual keywords, where they start their construct.
syn match orchContextual /\<input\ze\s\+step\>/
syn match orchContextual /\<fixed\ze\s\+\h\w*\s*:/
syn match orchContextual /\<when\ze\s\+\h\w*\s*\%(|\|,\|;\|}\|=\|$\|\/\/\)/
syn match orchContextual /\<graph\ze\s*{/
syn match orchContextual /\<after\ze\s\+\%(\h\|(\)/
syn match orchContextual /\<\%(limit\|retry\|backoff\|factor\|timeout\|every\|within\)\ze\s\+\d/
syn match orchContextual /\<compensate\ze\s\+\h/
syn match orchContextual /\<poll\ze\s\+every\>/
syn match orchContextual /\<until\ze\s\+\%(\%(and\|or\|as\|with\|in\|after\)\>\)\@!\%(\h\|\d\|"\|(\|\[\|-\)/

" Literals.
syn match orchNumber /\<\d\+\>/
syn match orchFloat /\<\d\+\.\d\+\>/
syn match orchDuration /\<\d\+\%(ms\|s\|m\|h\|d\)\>/

syn region orchString start=/"/ skip=/\\\\\|\\"/ end=/"/ end=/$/ contains=orchInvalidEscape,orchEscape,orchInterpolation,@Spell
syn match orchInvalidEscape /\\./ contained
syn match orchEscape /\\[nt\\"$]/ contained
syn region orchInterpolation matchgroup=orchInterpolationDelimiter start=/\${/ end=/}/ contained contains=@orchExpression
syn region orchNestedBraces start=/{/ end=/}/ contained transparent contains=@orchExpression

syn cluster orchExpression contains=orchIdentifier,orchType,orchBuiltinType,orchState,orchBuiltin,orchProperty,orchKey,orchOperator,orchStatement,orchConditional,orchRepeat,orchOperatorWord,orchBoolean,orchNone,orchNumber,orchFloat,orchDuration,orchString,orchNestedBraces

" Comments (last: they win over `/`).
syn keyword orchTodo TODO FIXME XXX NOTE contained
syn match orchComment +//.*$+ contains=orchTodo,@Spell
syn match orchDocComment +///\%(/\)\@!.*$+ contains=orchTodo,@Spell

hi def link orchIdentifier NONE
hi def link orchKey Identifier
hi def link orchProperty Identifier
hi def link orchType Type
hi def link orchBuiltinType Type
hi def link orchTypeName Typedef
hi def link orchState Constant
hi def link orchFunctionName Function
hi def link orchBuiltin Function
hi def link orchOperator Operator
hi def link orchOperatorWord Operator
hi def link orchImport Include
hi def link orchDeclaration Structure
hi def link orchStatement Statement
hi def link orchConditional Conditional
hi def link orchRepeat Repeat
hi def link orchContextual Keyword
hi def link orchBoolean Boolean
hi def link orchNone Constant
hi def link orchNumber Number
hi def link orchFloat Float
hi def link orchDuration Number
hi def link orchString String
hi def link orchEscape SpecialChar
hi def link orchInvalidEscape Error
hi def link orchInterpolationDelimiter Delimiter
hi def link orchTodo Todo
hi def link orchComment Comment
hi def link orchDocComment SpecialComment

let b:current_syntax = 'orch'
let &cpo = s:cpo_save
unlet s:cpo_save
