package link

// Connected reports whether a guest (QEMU) is connected now: the link is
// up. It takes the writers' lock, briefly; call it per request, never per
// frame.
func (s *Socket) Connected() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.cur != nil
}
