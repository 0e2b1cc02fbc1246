// Express 4, installed under the alias "express4" beside Express 5, has the same shape as far as these tests go.
declare module 'express4' {
  import express from 'express';
  export default express;
}
