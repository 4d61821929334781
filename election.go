package raft

// Elections: role changes, the election timer, PreVote and RequestVote
// (paper §5.2, §5.4.1; thesis §9.6 for PreVote, §4.2.3 and §6.2 for
// CheckQuorum and ignoring disruptive votes).

func (c *core) becomeFollower(term uint64, lead NodeID) {
	changed := c.role != RoleFollower || term != c.term
	c.reset(term)
	c.role = RoleFollower
	c.lead = lead
	if changed {
		c.log.Info("became follower", "term", c.term, "leader", lead)
	}
}

// becomePreCandidate starts a PreVote round. Unlike becomeCandidate it changes
// neither term nor vote: a node that cannot win (partitioned, or behind) must
// not raise the cluster's term (thesis §9.6).
func (c *core) becomePreCandidate() {
	c.reset(c.term) // keeps term and vote
	c.role = RolePreCandidate
	c.votes = map[NodeID]bool{}
	c.log.Info("became pre-candidate", "term", c.term)
}

func (c *core) becomeCandidate() {
	c.reset(c.term + 1)
	c.vote = c.id
	c.role = RoleCandidate
	c.votes = map[NodeID]bool{}
	c.log.Info("became candidate", "term", c.term)
}

func (c *core) becomeLeader() {
	c.reset(c.term)
	c.role = RoleLeader
	c.lead = c.id
	c.prs = make(map[NodeID]*progress, len(c.peers)-1)
	last := c.raftLog.lastIndex()
	for _, id := range c.peers {
		if id != c.id {
			c.prs[id] = newProgress(last+1, c.cfg.maxInflightMsgs, c.cfg.maxInflightBytes)
		}
	}
	c.log.Info("became leader", "term", c.term, "last_index", last)
	// Paper §8: a new leader does not know which earlier-term entries are
	// committed, and by Figure 8 cannot commit them by counting. Appending an
	// empty entry of its own term and committing it commits them all.
	c.raftLog.append(Entry{Index: last + 1, Term: c.term, Type: EntryNoop})
	c.bcastAppend(false)
	if len(c.peers) == 1 {
		c.maybeCommit()
	}
}

// tickElection is the timer of followers and candidates: after a randomized
// election timeout without hearing from a leader or granting a vote, start an
// election.
func (c *core) tickElection() {
	c.electionElapsed++
	if c.electionElapsed >= c.randomizedElectionTimeout {
		c.electionElapsed = 0
		c.campaign()
	}
}

// campaign starts an election after a timeout: a PreVote round first when
// enabled. A pre-candidate whose round timed out starts a new PreVote round,
// never a real election: only winning a PreVote may raise the term
// (thesis §9.6), or an isolated node would inflate its term every other
// timeout and depose the leader when it rejoins (pitfall 12).
func (c *core) campaign() {
	if c.role == RoleLeader {
		return
	}
	if c.cfg.preVote {
		c.becomePreCandidate()
		c.requestVotes(MsgPreVote, c.term+1)
		return
	}
	c.startElection()
}

// startElection starts a real election in the next term.
func (c *core) startElection() {
	c.becomeCandidate()
	c.requestVotes(MsgVote, c.term)
}

// requestVotes votes for itself and asks every peer for its vote in term.
func (c *core) requestVotes(voteType MessageType, term uint64) {
	if c.recordVote(c.id, true) {
		// A single-node cluster wins on its own vote.
		c.wonElection()
		return
	}
	for _, id := range c.peers {
		if id != c.id {
			c.send(Message{Type: voteType, To: id, Term: term,
				Index: c.raftLog.lastIndex(), LogTerm: c.raftLog.lastTerm()})
		}
	}
}

// recordVote records a vote and reports whether the round is now won.
func (c *core) recordVote(from NodeID, granted bool) bool {
	if _, ok := c.votes[from]; !ok {
		c.votes[from] = granted
	}
	return c.countVotes(true) >= c.quorum()
}

func (c *core) countVotes(granted bool) int {
	n := 0
	for _, v := range c.votes {
		if v == granted {
			n++
		}
	}
	return n
}

func (c *core) wonElection() {
	if c.role == RolePreCandidate {
		c.startElection()
		return
	}
	c.becomeLeader()
}

// handleVote answers MsgVote and MsgPreVote (Figure 2, RequestVote receiver
// implementation). The term has been settled by step: m.Term >= c.term, and
// for a PreVote it may be c.term+1 without our term having changed.
func (c *core) handleVote(m Message) {
	respType := MsgVoteResp
	if m.Type == MsgPreVote {
		respType = MsgPreVoteResp
	}
	canVote := c.vote == m.From || // a repeat of a vote we already cast
		(c.vote == 0 && c.lead == 0) || // nobody voted for, no leader known in this term
		(m.Type == MsgPreVote && m.Term > c.term) // a PreVote is for a future term
	// §5.4.1: grant only to a candidate whose log is at least as up-to-date.
	upToDate := c.raftLog.isUpToDate(m.Index, m.LogTerm) || c.cfg.bugs&bugVoteWithoutLogCheck != 0
	if canVote && upToDate {
		c.log.Debug("grant vote", "type", m.Type, "to", m.From, "term", m.Term)
		// The grant carries the request's term: for a PreVote that is the
		// future term the candidate would use, not ours.
		c.send(Message{Type: respType, To: m.From, Term: m.Term})
		if m.Type == MsgVote {
			// The vote is part of the hard state; send keeps the grant
			// until it is durable (pitfall 3).
			c.vote = m.From
			c.electionElapsed = 0
		}
		return
	}
	c.log.Debug("reject vote", "type", m.Type, "to", m.From, "term", m.Term, "vote", c.vote)
	c.send(Message{Type: respType, To: m.From, Term: c.term, Reject: true})
}

// stepCandidate handles messages in the candidate and pre-candidate roles.
func (c *core) stepCandidate(m Message) error {
	myRespType := MsgVoteResp
	if c.role == RolePreCandidate {
		myRespType = MsgPreVoteResp
	}
	switch m.Type {
	case MsgApp, MsgHeartbeat, MsgSnap:
		// A leader exists in our term (§5.2: "if AppendEntries RPC received
		// from new leader: convert to follower").
		c.becomeFollower(m.Term, m.From)
		return c.stepFollower(m)
	case myRespType:
		if c.role == RolePreCandidate && !m.Reject && m.Term != c.term+1 {
			// A delayed grant from an earlier round asked about another
			// term; counting it could win a PreVote nobody granted now.
			c.log.Debug("ignore stale pre-vote grant", "from", m.From, "msg_term", m.Term)
			return nil
		}
		if c.recordVote(m.From, !m.Reject) {
			c.wonElection()
		} else if c.countVotes(false) >= c.quorum() {
			// Lost: wait for the next timeout as a follower.
			c.becomeFollower(c.term, 0)
		}
	default:
		c.log.Debug("candidate ignores message", "type", m.Type, "from", m.From)
	}
	return nil
}

// stepFollower handles messages in the follower role.
func (c *core) stepFollower(m Message) error {
	switch m.Type {
	case MsgApp:
		c.electionElapsed = 0
		c.lead = m.From
		return c.handleAppend(m)
	case MsgHeartbeat:
		c.electionElapsed = 0
		c.lead = m.From
		c.handleHeartbeat(m)
	case MsgSnap:
		c.electionElapsed = 0
		c.lead = m.From
		c.handleSnapshotChunk(m)
	default:
		c.log.Debug("follower ignores message", "type", m.Type, "from", m.From)
	}
	return nil
}
