package sqlstore

import "sync"

// maxCachedNames bounds one cache: past it, an arbitrary remote user's entries are
// dropped to make room (they are reloaded from SQL when needed).
const maxCachedNames = 4096

// txnCache caches decoded rows keyed by remote user name and device, and keeps them
// consistent with SQL transactions.
//
// Invariant: an entry holds either committed state or state written by the one
// in-flight transaction that claimed its name. A transaction claims a name before it
// writes rows of that name; while the claim lasts, every other context bypasses the
// cache for that name (reads go to SQL, which returns committed state, and do not
// fill). On commit the claimant's entries stay; on rollback, or when two transactions
// claimed the same name, the name's entries are evicted. A reader that missed fills
// the cache only if nothing was claimed or written since its lookup (gen), so a slow
// reader cannot put back a value that a writer replaced meanwhile.
//
// Eviction is always safe: it only costs a reload.
type txnCache[V any] struct {
	mu     sync.Mutex
	names  map[string]map[uint32]V
	owners map[string]*owner
	all    *owner // claim over every name (DeleteAllSessions, DeleteAccount)
	gen    uint64
}

type owner struct {
	t      *txn
	n      int  // transactions holding the claim
	shared bool // more than one transaction claimed it: evict when each ends
}

// ticket lets a reader that missed fill the cache later, if nothing changed meanwhile.
type ticket struct {
	gen   uint64
	valid bool
}

func newTxnCache[V any]() *txnCache[V] {
	return &txnCache[V]{names: make(map[string]map[uint32]V), owners: make(map[string]*owner)}
}

func ownedBy(o *owner, t *txn) bool { return o == nil || (!o.shared && o.t == t) }

// usable reports whether a context in txn t (nil outside a transaction) may read and
// fill entries of name. The caller holds c.mu.
func (c *txnCache[V]) usable(t *txn, name string) bool {
	if t != nil && t.foreign {
		return false
	}
	return ownedBy(c.all, t) && ownedBy(c.owners[name], t)
}

// get looks an entry up. If swap is not nil and the entry is present, the entry is
// replaced by swap(entry) and the old value returned (sessions use this to hand a
// decoded record out exactly once).
func (c *txnCache[V]) get(t *txn, name string, dev uint32, swap func(V) V) (v V, hit bool, tk ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable(t, name) {
		return v, false, ticket{}
	}
	if devs := c.names[name]; devs != nil {
		if v, hit = devs[dev]; hit {
			if swap != nil {
				devs[dev] = swap(v)
			}
			return v, true, ticket{}
		}
	}
	return v, false, ticket{gen: c.gen, valid: true}
}

// fill stores a value read from SQL after a miss, unless the name changed since.
func (c *txnCache[V]) fill(t *txn, name string, dev uint32, v V, tk ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !tk.valid || tk.gen != c.gen || !c.usable(t, name) {
		return
	}
	c.setLocked(name, dev, v)
}

// put stores the value a write in t just made (t claimed name before writing).
func (c *txnCache[V]) put(t *txn, name string, dev uint32, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.usable(t, name) {
		c.setLocked(name, dev, v)
	} else if devs := c.names[name]; devs != nil {
		delete(devs, dev)
	}
}

func (c *txnCache[V]) setLocked(name string, dev uint32, v V) {
	devs := c.names[name]
	if devs == nil {
		if len(c.names) >= maxCachedNames {
			for victim := range c.names {
				if c.owners[victim] == nil {
					delete(c.names, victim)
					break
				}
			}
		}
		devs = make(map[uint32]V, 1)
		c.names[name] = devs
	}
	devs[dev] = v
}

// evictName drops every entry of one remote user.
func (c *txnCache[V]) evictName(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.names, name)
}

// evictAll drops every entry.
func (c *txnCache[V]) evictAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.names)
}

// claim marks name as being written by t; call it before the SQL write.
func (c *txnCache[V]) claim(t *txn, name string) {
	if !t.addClaim(claimKey{cache: c, name: name}) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.owners[name] = join(c.owners[name], t)
}

// claimAll marks every name as being written by t.
func (c *txnCache[V]) claimAll(t *txn) {
	if !t.addClaim(claimKey{cache: c, all: true}) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.all = join(c.all, t)
}

func join(o *owner, t *txn) *owner {
	if o == nil {
		return &owner{t: t, n: 1}
	}
	o.n++
	o.shared = true
	return o
}

func (c *txnCache[V]) release(t *txn, name string, all, committed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	o := c.owners[name]
	if all {
		o = c.all
	}
	if o == nil {
		return
	}
	if !committed || o.shared || t.foreign {
		if all {
			clear(c.names)
		} else {
			delete(c.names, name)
		}
	}
	if o.n--; o.n > 0 {
		return
	}
	if all {
		c.all = nil
	} else {
		delete(c.owners, name)
	}
}
