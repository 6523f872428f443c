{
  :local inner 1
  :put $inner
}
