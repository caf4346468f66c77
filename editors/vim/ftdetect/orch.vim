" orch: a typed language for infrastructure workflows (https://github.com/ — see editors/README.md)
autocmd BufNewFile,BufRead *.orch setlocal filetype=orch
