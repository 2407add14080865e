// Package defaults gives the example programs' flags their defaults: a
// value from the environment, and a client new to each run (a reference
// and a phone), so that running an example again against the same dev
// stack creates another client.
package defaults

import (
	"fmt"
	"os"
	"time"

	"github.com/altegio-integrator/integrator/producer"
)

// Env returns the environment variable name, or def when it is unset or
// empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Ref returns a client reference new to this run: "example-" and the last
// 12 hex digits of a fresh command id (producer.NewID), which are random.
func Ref() string {
	id := producer.NewID()
	return "example-" + id[len(id)-12:]
}

// Phone returns a phone new to this run, +1555 and 7 digits from the
// clock. The sandbox, like the API, refuses a second client with a phone.
func Phone() string {
	return fmt.Sprintf("+1555%07d", time.Now().UnixNano()%10_000_000)
}
