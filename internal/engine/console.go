package engine

import "net/http"

// SetConsole sets the handler served at / on the operations address (the
// web console, built after New because it connects to this engine's bus with
// its own key). Call it before Run; it replaces Config.Console.
func (e *Engine) SetConsole(h http.Handler) { e.cfg.Console = h }

// console is the handler Run mounts at / on the operations address.
func (e *Engine) console() http.Handler { return e.cfg.Console }
