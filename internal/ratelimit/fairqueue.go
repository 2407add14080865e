package ratelimit

import (
	"cmp"
	"slices"
	"strings"
)

// fairQueue orders the requests waiting in one process by hierarchical
// weighted fair queueing (virtual finish tags): groups (accounts) share the
// slots by their weights, and inside a group its members (locations) share
// the group's slots by theirs. A flow name "account/location" names both; a
// name without "/" is a group of one member. Urgent requests go before every
// request of their group and member that is not. Not safe for concurrent
// use: the Limiter holds its mutex.
type fairQueue struct {
	weights map[string]float64
	vtime   float64 // virtual time across groups: the tag of the last slot given
	groups  map[string]*group
	n       int // waiters queued
}

// group is one account's share: a tag per waiter, and its members.
type group struct {
	name    string
	weight  float64
	finish  float64   // the group's latest tag
	tags    []float64 // one per waiter, ascending
	vtime   float64   // virtual time among the members
	members map[string]*member
}

// member is one location's queue inside its group.
type member struct {
	name   string
	weight float64
	finish float64   // the member's latest tag
	queue  []*waiter // ascending tags
}

func newFairQueue(weights map[string]float64) fairQueue {
	return fairQueue{weights: weights, groups: make(map[string]*group)}
}

// split returns the group and member of a flow name.
func split(flow string) (string, string) {
	if g, m, ok := strings.Cut(flow, "/"); ok {
		return g, m
	}
	return flow, flow
}

// push queues w (whose flow is set).
func (q *fairQueue) push(w *waiter, urgent bool) {
	gname, mname := split(w.flow)
	g := q.groups[gname]
	if g == nil {
		g = &group{name: gname, weight: cmp.Or(q.weights[gname], 1), members: make(map[string]*member)}
		q.groups[gname] = g
	}
	m := g.members[mname]
	if m == nil {
		m = &member{name: mname, weight: 1}
		if mname != gname {
			m.weight = cmp.Or(q.weights[mname], 1)
		}
		g.members[mname] = m
	}
	if urgent {
		// Ahead of every tag waiting (they are all above the virtual
		// times), after the urgent ones already there; the group and the
		// member still pay for it with their next tags.
		w.gtag, w.tag = q.vtime, g.vtime
		g.finish = max(q.vtime, g.finish) + 1/g.weight
		m.finish = max(g.vtime, m.finish) + 1/m.weight
	} else {
		w.gtag = max(q.vtime, g.finish) + 1/g.weight
		g.finish = w.gtag
		w.tag = max(g.vtime, m.finish) + 1/m.weight
		m.finish = w.tag
	}
	g.tags = insertSorted(g.tags, w.gtag, func(t float64) float64 { return t })
	m.queue = insertSorted(m.queue, w, func(w *waiter) float64 { return w.tag })
	q.n++
}

// insertSorted inserts v after every element whose key is not above v's.
func insertSorted[T any](s []T, v T, key func(T) float64) []T {
	i := len(s)
	for i > 0 && key(s[i-1]) > key(v) {
		i--
	}
	return slices.Insert(s, i, v)
}

// pop removes and returns the next waiter: of the group whose next tag is
// smallest, the member whose next tag is smallest; q.n > 0.
func (q *fairQueue) pop() *waiter {
	var g *group
	for _, c := range q.groups {
		if g == nil || c.tags[0] < g.tags[0] || (c.tags[0] == g.tags[0] && c.name < g.name) {
			g = c
		}
	}
	var m *member
	for _, c := range g.members {
		if m == nil || c.queue[0].tag < m.queue[0].tag || (c.queue[0].tag == m.queue[0].tag && c.name < m.name) {
			m = c
		}
	}
	q.vtime, g.tags = g.tags[0], g.tags[1:]
	w := m.queue[0]
	m.queue = m.queue[1:]
	g.vtime = w.tag
	q.drop(g, m)
	return w
}

// remove takes w out of the queue; false when it is not queued (it was
// popped). Its group and member give its tags back: a request that left
// does not charge the ones that stay.
func (q *fairQueue) remove(w *waiter) bool {
	gname, mname := split(w.flow)
	g := q.groups[gname]
	if g == nil {
		return false
	}
	m := g.members[mname]
	if m == nil {
		return false
	}
	i := slices.Index(m.queue, w)
	if i < 0 {
		return false
	}
	m.queue = slices.Delete(m.queue, i, i+1)
	if j := slices.Index(g.tags, w.gtag); j >= 0 {
		g.tags = slices.Delete(g.tags, j, j+1)
	}
	// The latest tags left are the ones the next requests follow (a
	// push starts from the virtual time when nothing is left).
	g.finish, m.finish = 0, 0
	if len(g.tags) > 0 {
		g.finish = g.tags[len(g.tags)-1]
	}
	if len(m.queue) > 0 {
		m.finish = m.queue[len(m.queue)-1].tag
	}
	q.drop(g, m)
	return true
}

// drop forgets a member and a group left without waiters, and counts one
// waiter less.
func (q *fairQueue) drop(g *group, m *member) {
	q.n--
	if len(m.queue) == 0 {
		delete(g.members, m.name)
	}
	if len(g.tags) == 0 {
		delete(q.groups, g.name)
	}
}
