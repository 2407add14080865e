package ratelimit

import (
	"cmp"
	"slices"
	"strings"
)

// Class is the kind of work a request serves. Commands and reads share the
// budget by the limiter's CommandShare: each class keeps its share while
// both have requests waiting, and takes every slot the other leaves idle.
type Class int

// The classes.
const (
	// Commands are requests that carry out commands (the default).
	Commands Class = iota
	// Reads are requests that answer reads and exports.
	Reads
)

// String names the class, as in the metrics.
func (c Class) String() string {
	if c == Reads {
		return "reads"
	}
	return "commands"
}

// levels of the fair queue: class, group (an account) and member (a
// location).
const levels = 3

// fairQueue orders the requests waiting in one process by hierarchical
// weighted fair queueing (virtual finish tags) on a tree of three levels:
// the classes share the slots by their shares; inside a class, groups
// (accounts) share the class's slots by their weights; inside a group, its
// members (locations) share the group's slots by theirs. A flow name
// "account/location" names a group and a member; a name without "/" is a
// group of one member. Urgent requests go before every request of their
// class, group and member that is not. Not safe for concurrent use: the
// Limiter holds its mutex.
type fairQueue struct {
	weights map[string]float64 // of groups and members, by name
	share   [2]float64         // of the classes, by Class
	root    node
	n       int // waiters queued
}

// node is one share of the slots: a class, a group or a member. It keeps
// one tag (at its own level) per waiter below it, ascending; a member also
// keeps its waiters.
type node struct {
	name     string
	weight   float64
	finish   float64   // the latest tag given at this node
	tags     []float64 // one per waiter below, ascending
	vtime    float64   // virtual time among the children: the tag of the last one served
	children map[string]*node
	queue    []*waiter // members only: ascending by their member tag
}

func newFairQueue(weights map[string]float64, commandShare float64) fairQueue {
	return fairQueue{
		weights: weights,
		share:   [2]float64{commandShare, 1 - commandShare},
		root:    node{children: make(map[string]*node)},
	}
}

// split returns the group and member of a flow name.
func split(flow string) (string, string) {
	if g, m, ok := strings.Cut(flow, "/"); ok {
		return g, m
	}
	return flow, flow
}

// path names the nodes of w, class first, and their weights.
func (q *fairQueue) path(w *waiter) (names [levels]string, weights [levels]float64) {
	g, m := split(w.flow)
	names = [levels]string{w.class.String(), g, m}
	weights = [levels]float64{q.share[w.class], cmp.Or(q.weights[g], 1), 1}
	if m != g {
		weights[2] = cmp.Or(q.weights[m], 1)
	}
	return names, weights
}

// push queues w (whose flow and class are set).
func (q *fairQueue) push(w *waiter, urgent bool) {
	names, weights := q.path(w)
	parent := &q.root
	for lvl, name := range names {
		n := parent.children[name]
		if n == nil {
			n = &node{name: name, weight: weights[lvl], children: make(map[string]*node)}
			parent.children[name] = n
		}
		if urgent {
			// Ahead of every tag waiting (they are all above the virtual
			// time), after the urgent ones already there; the node still
			// pays for it with its next tags.
			w.tags[lvl] = parent.vtime
			n.finish = max(parent.vtime, n.finish) + 1/n.weight
		} else {
			w.tags[lvl] = max(parent.vtime, n.finish) + 1/n.weight
			n.finish = w.tags[lvl]
		}
		n.tags = insertSorted(n.tags, w.tags[lvl], func(t float64) float64 { return t })
		parent = n
	}
	parent.queue = insertSorted(parent.queue, w, func(w *waiter) float64 { return w.tags[levels-1] })
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

// pop removes and returns the next waiter: at each level, the child whose
// next tag is smallest, which spends that tag. A node's tags are the
// slots it is due, in order, not the tags of particular waiters: the
// waiter handed out below may have pushed a later one (the order below is
// fair, not arrival order). q.n > 0.
func (q *fairQueue) pop() *waiter {
	var path [levels]*node
	parent := &q.root
	for lvl := range levels {
		var next *node
		for _, c := range parent.children {
			if next == nil || c.tags[0] < next.tags[0] || (c.tags[0] == next.tags[0] && c.name < next.name) {
				next = c
			}
		}
		parent.vtime, next.tags = next.tags[0], next.tags[1:]
		path[lvl], parent = next, next
	}
	w := parent.queue[0]
	parent.queue = parent.queue[1:]
	q.prune(path)
	return w
}

// remove takes w out of the queue; false when it is not queued (it was
// popped). Its nodes give a tag back: a request that left does not charge
// the ones that stay, and every node keeps one tag per waiter below it.
func (q *fairQueue) remove(w *waiter) bool {
	names, _ := q.path(w)
	var path [levels]*node
	parent := &q.root
	for lvl, name := range names {
		if parent = parent.children[name]; parent == nil {
			return false
		}
		path[lvl] = parent
	}
	i := slices.Index(parent.queue, w)
	if i < 0 {
		return false
	}
	parent.queue = slices.Delete(parent.queue, i, i+1)
	for lvl, n := range path {
		// A member's tags are its waiters' (its queue is in tag order);
		// above it, a node's tags are the slots it is due, and w's own may
		// have been spent by another waiter's pop: one waiter less is one
		// slot less, the latest.
		j := len(n.tags) - 1
		if lvl == levels-1 {
			j = slices.Index(n.tags, w.tags[lvl])
		}
		if j >= 0 {
			n.tags = slices.Delete(n.tags, j, j+1)
		}
		// The latest tag left is the one the next requests follow (a push
		// starts from the virtual time when nothing is left).
		n.finish = 0
		if len(n.tags) > 0 {
			n.finish = n.tags[len(n.tags)-1]
		}
	}
	q.prune(path)
	return true
}

// prune forgets the nodes of path left without waiters, and counts one
// waiter less.
func (q *fairQueue) prune(path [levels]*node) {
	q.n--
	for lvl := levels - 1; lvl >= 0; lvl-- {
		if len(path[lvl].tags) > 0 {
			return
		}
		parent := &q.root
		if lvl > 0 {
			parent = path[lvl-1]
		}
		delete(parent.children, path[lvl].name)
	}
}

// waiting returns how many requests of class c wait.
func (q *fairQueue) waiting(c Class) int {
	if n := q.root.children[c.String()]; n != nil {
		return len(n.tags)
	}
	return 0
}
