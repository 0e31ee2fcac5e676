//go:build race

package bench

// raceEnabled: the race detector slows the engine several times over, so
// timing goals are not asserted under it (the checks still are).
const raceEnabled = true
