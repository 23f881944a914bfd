package sqlstore

import (
	"fmt"
	"testing"
)

// TestTxnCache checks the cache's claim rules without a database. Each case ends by
// looking up ("bob", 1) from outside any transaction.
func TestTxnCache(t *testing.T) {
	type tc struct {
		name    string
		run     func(c *txnCache[int])
		wantHit bool
		want    int
	}
	cases := []tc{
		{name: "fill after a miss", wantHit: true, want: 7, run: func(c *txnCache[int]) {
			_, _, tk := c.get(nil, "bob", 1, nil)
			c.fill(nil, "bob", 1, 7, tk)
		}},
		{name: "stale fill is ignored", wantHit: true, want: 2, run: func(c *txnCache[int]) {
			_, _, tk := c.get(nil, "bob", 1, nil) // a reader misses and goes to SQL...
			t1 := &txn{}
			c.claim(t1, "bob") // ...while a writer commits a newer value
			c.put(t1, "bob", 1, 2)
			t1.finish(true)
			c.fill(nil, "bob", 1, 1, tk) // the reader's older value must not win
		}},
		{name: "committed write stays", wantHit: true, want: 3, run: func(c *txnCache[int]) {
			t1 := &txn{}
			c.claim(t1, "bob")
			c.put(t1, "bob", 1, 3)
			if _, hit, tk := c.get(nil, "bob", 1, nil); hit || tk.valid {
				t.Error("an uncommitted write is visible (or fillable) outside its transaction")
			}
			if v, hit, _ := c.get(t1, "bob", 1, nil); !hit || v != 3 {
				t.Error("a transaction does not see its own write")
			}
			t1.finish(true)
		}},
		{name: "rolled back write is evicted", run: func(c *txnCache[int]) {
			c.fill(nil, "bob", 1, 1, ticket{gen: c.gen, valid: true})
			t1 := &txn{}
			c.claim(t1, "bob")
			c.put(t1, "bob", 1, 3)
			t1.finish(false)
		}},
		{name: "other names survive a rollback", wantHit: true, want: 1, run: func(c *txnCache[int]) {
			c.fill(nil, "bob", 1, 1, ticket{gen: c.gen, valid: true})
			t1 := &txn{}
			c.claim(t1, "carol")
			c.put(t1, "carol", 1, 3)
			t1.finish(false)
		}},
		{name: "two claimants evict even on commit", run: func(c *txnCache[int]) {
			t1, t2 := &txn{}, &txn{}
			c.claim(t1, "bob")
			c.claim(t2, "bob")
			c.put(t1, "bob", 1, 3)
			if _, hit, _ := c.get(t2, "bob", 1, nil); hit {
				t.Error("a second claimant sees the first one's write")
			}
			t1.finish(true)
			t2.finish(true)
			if len(c.owners) != 0 {
				t.Error("claims left behind")
			}
		}},
		{name: "claim of everything hides every name", wantHit: true, want: 4, run: func(c *txnCache[int]) {
			t1 := &txn{}
			c.claimAll(t1)
			c.put(t1, "bob", 1, 4)
			if _, hit, tk := c.get(nil, "bob", 1, nil); hit || tk.valid {
				t.Error("a claim of everything did not hide bob")
			}
			t1.finish(true)
			if c.all != nil {
				t.Error("claim of everything left behind")
			}
		}},
		{name: "foreign transactions bypass the cache", run: func(c *txnCache[int]) {
			t1 := &txn{foreign: true}
			c.claim(t1, "bob")
			c.put(t1, "bob", 1, 5)
			if _, hit, tk := c.get(t1, "bob", 1, nil); hit || tk.valid {
				t.Error("a foreign transaction used the cache")
			}
			t1.finish(true)
		}},
		{name: "swap hands a value out once", wantHit: true, want: 0, run: func(c *txnCache[int]) {
			c.fill(nil, "bob", 1, 6, ticket{gen: c.gen, valid: true})
			if v, hit, _ := c.get(nil, "bob", 1, func(int) int { return 0 }); !hit || v != 6 {
				t.Error("swap did not return the cached value")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTxnCache[int]()
			tc.run(c)
			v, hit, _ := c.get(nil, "bob", 1, nil)
			if hit != tc.wantHit || (hit && v != tc.want) {
				t.Errorf("lookup = %d, hit=%v; want %d, hit=%v", v, hit, tc.want, tc.wantHit)
			}
		})
	}
}

func TestTxnCacheIsBounded(t *testing.T) {
	c := newTxnCache[int]()
	for i := range maxCachedNames + 100 {
		c.fill(nil, fmt.Sprint(i), 0, i, ticket{gen: c.gen, valid: true})
	}
	if len(c.names) > maxCachedNames {
		t.Errorf("%d names cached, bound is %d", len(c.names), maxCachedNames)
	}
}
