// Package stanza is the message model of PROTOCOL.md section 3: a Node is one XML
// element (tag, attributes, and either child elements or text), and Marshal/Unmarshal
// are the strict codec between Nodes and frames.
//
// It imports nothing from the rest of the project.
package stanza

import (
	"encoding/base64"
	"fmt"
	"strconv"
)

// Attrs are a node's attributes.
type Attrs map[string]string

// Node is one element. Content is nil, []Node (children), string (text) or []byte
// (binary, sent as standard base64 text). Decoded text is always a string; read binary
// values with Bytes.
type Node struct {
	Tag     string
	Attrs   Attrs
	Content any
}

// Children returns the child elements, or nil when the node holds text or nothing.
func (n Node) Children() []Node {
	children, _ := n.Content.([]Node)
	return children
}

// Child returns the first child with the tag.
func (n Node) Child(tag string) (Node, bool) {
	for _, c := range n.Children() {
		if c.Tag == tag {
			return c, true
		}
	}
	return Node{}, false
}

// ChildrenByTag returns every child with the tag.
func (n Node) ChildrenByTag(tag string) []Node {
	var out []Node
	for _, c := range n.Children() {
		if c.Tag == tag {
			out = append(out, c)
		}
	}
	return out
}

// Path follows a chain of first children by tag: n.Path("list", "user").
func (n Node) Path(tags ...string) (Node, bool) {
	cur := n
	for _, tag := range tags {
		next, ok := cur.Child(tag)
		if !ok {
			return Node{}, false
		}
		cur = next
	}
	return cur, true
}

// Text returns the text content ("" for children or nothing).
func (n Node) Text() string {
	switch c := n.Content.(type) {
	case string:
		return c
	case []byte:
		return base64.StdEncoding.EncodeToString(c)
	}
	return ""
}

// Bytes decodes the content as standard base64 (or returns it as is when the node was
// built with []byte).
func (n Node) Bytes() ([]byte, error) {
	switch c := n.Content.(type) {
	case []byte:
		return c, nil
	case string:
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, fmt.Errorf("failed to decode base64 in <%s>: %w", n.Tag, err)
		}
		return b, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("<%s> holds elements, not binary", n.Tag)
}

// Attr returns an attribute ("" when absent).
func (n Node) Attr(key string) string { return n.Attrs[key] }

// HasAttr reports whether the attribute is present.
func (n Node) HasAttr(key string) bool {
	_, ok := n.Attrs[key]
	return ok
}

// AttrInt parses an integer attribute.
func (n Node) AttrInt(key string) (int64, error) {
	v, ok := n.Attrs[key]
	if !ok {
		return 0, fmt.Errorf("<%s> has no %s attribute", n.Tag, key)
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("<%s %s=%q> is not an integer", n.Tag, key, v)
	}
	return i, nil
}

// String gives a short description for logs: tag and attribute names, never content.
func (n Node) String() string {
	s := "<" + n.Tag
	for _, k := range []string{"id", "type", "class", "xmlns"} {
		if v, ok := n.Attrs[k]; ok {
			s += " " + k + "=" + strconv.Quote(v)
		}
	}
	return s + ">"
}
